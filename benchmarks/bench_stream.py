"""Streaming latency: time to the first `segment` event and to the `footer`, 20 min vs 2 h.

    python -m benchmarks.bench_stream [--model random-tiny-shape] [--workers 2]

Builds a 20-minute and a 2-hour MP3 from the committed speech (stream copy, seconds), serves
them with range support, starts the real stack (model server with a random Whisper-tiny-shaped
model, chunk workers, orchestrator) and, for each file, runs the SSE endpoint and the JSON
endpoint one after the other. Targets: first segment within 3 s for both lengths (independent of
file length), and the streamed job's total time within 5 % of the JSON endpoint's.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import imageio_ffmpeg

from services.stack import LocalStack, free_port
from tests.support.media_server import MediaServer

MEDIA = Path(__file__).resolve().parent.parent / "tests" / "media" / "speech_200s.mp3"


def loop_media(target_sec: float, folder: Path) -> Path:
    loops = max(1, round(target_sec / 203.85))
    path = folder / f"speech_{loops}x.mp3"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops - 1),
         "-i", str(MEDIA), "-c", "copy", str(path)],
        check=True,
    )  # fmt: skip
    return path


def run_stream(url: str, body: Mapping[str, object]) -> tuple[float, float, int]:
    """(seconds to the first segment, seconds to the footer, segments)."""
    started = time.perf_counter()
    first = None
    segments = 0
    with httpx.stream("POST", f"{url}/v1/transcribe/stream", json=body, timeout=3600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: segment":
                segments += 1
                if first is None:
                    first = time.perf_counter() - started
            elif line == "event: footer":
                return first or float("nan"), time.perf_counter() - started, segments
            elif line == "event: error":
                raise RuntimeError("the job failed")
    raise RuntimeError("stream ended without a footer")


def run_json(url: str, body: Mapping[str, object]) -> tuple[float, int]:
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/transcribe", json=body, timeout=3600)
    response.raise_for_status()
    return time.perf_counter() - started, len(response.json()["segments"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="random-tiny-shape")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lengths", default="1200,7200", help="file lengths in seconds")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    files = [loop_media(float(length), folder) for length in args.lengths.split(",")]
    stack = LocalStack(
        port=free_port(),
        workers=args.workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(args.workers)],
        env={"WHISPER_MODEL": args.model, "WHISPER_MODEL_CACHE_DIR": str(folder / "models")},
        log_dir=folder,
    )
    rows = []
    with stack, MediaServer(folder) as media:
        warm_up = {"media_url": media.url(files[0].name), "params": {"language": "en"}}
        run_stream(stack.url, {**warm_up, "params": {"language": "en", "macro_chunk_size_sec": 60}})
        for path in files:
            body = {"media_url": media.url(path.name), "params": {"language": "en"}}
            json_total, json_segments = run_json(stack.url, body)
            first, stream_total, stream_segments = run_stream(stack.url, body)
            assert stream_segments == json_segments, (stream_segments, json_segments)
            rows.append((path.name, first, stream_total, json_total))

    print(f"\nmodel {args.model}, {args.workers} workers\n")
    print(
        f"{'file':<18} {'first segment':>14} {'stream total':>13} {'JSON total':>11} {'ratio':>7}"
    )
    for name, first, stream_total, json_total in rows:
        ratio = stream_total / json_total
        print(
            f"{name:<18} {first:>13.2f}s {stream_total:>12.1f}s {json_total:>10.1f}s {ratio:>7.3f}"
        )
    print()
    for name, first, stream_total, json_total in rows:
        print(f"{name}: first segment {first:.2f} s <= 3 s: {'PASS' if first <= 3 else 'FAIL'}; "
              f"stream/JSON {stream_total / json_total:.3f} <= 1.05: "
              f"{'PASS' if stream_total <= 1.05 * json_total else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    main()
