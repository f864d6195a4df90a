"""Time to first words: the first `segment` event of a 20-minute and a 2-hour file, on an idle
stack and right after another client abandoned a job; and streaming vs JSON total time.

    python -m benchmarks.bench_stream [--model base] [--workers 2] [--totals]

Builds a 20-minute and a 2-hour MP3 from the committed speech (stream copy, seconds), serves
them with range support and starts the real stack. Scenarios, one after the other:

    idle         each file streamed alone, 3 s after the job before: seconds to the first segment
    diarize      the same with `diarize`, right after each idle run: the speakers must not delay
                 the first words (the worker answers a micro chunk once its voices are found too)
    abandoned    a client streams the 20-minute file, leaves after its first segment, and 3 s
                 later (then at once) another client streams the 2-hour file: its first segment
    totals       (with --totals) each file streamed to the end and fetched as JSON: the ratio

Targets: first segment within 3 s on an idle stack whatever the length, with `diarize` within
0.5 s of the same file without it, within 5 s right after an abandoned job; a streamed job no
slower than 1.05x the JSON endpoint.
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

from services.stack import LOCAL_NETWORKS, LocalStack, free_port
from tests.support.media_server import MediaServer

MEDIA = Path(__file__).resolve().parent.parent / "tests" / "media" / "words_en_180s.mp3"
MEDIA_SEC = 182.4


def loop_media(target_sec: float, folder: Path) -> Path:
    loops = max(1, round(target_sec / MEDIA_SEC))
    path = folder / f"speech_{loops}x.mp3"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops - 1),
         "-i", str(MEDIA), "-c", "copy", str(path)],
        check=True,
    )  # fmt: skip
    return path


def first_segment(url: str, body: Mapping[str, object], leave: bool) -> tuple[float, float | None]:
    """(seconds to the first segment, seconds to the footer or None if we left first)."""
    started = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/v1/transcribe/stream", json=body, timeout=7200) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: segment" and first is None:
                first = time.perf_counter() - started
                if leave:
                    return first, None
            elif line == "event: footer":
                return first or float("nan"), time.perf_counter() - started
            elif line == "event: error":
                raise RuntimeError("the job failed")
    raise RuntimeError("stream ended without a footer")


def run_json(url: str, body: Mapping[str, object]) -> float:
    started = time.perf_counter()
    response = httpx.post(f"{url}/v1/transcribe", json=body, timeout=7200)
    response.raise_for_status()
    return time.perf_counter() - started


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="base")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--totals", action="store_true", help="also stream and fetch to the end")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    short, long = loop_media(1200, folder), loop_media(7200, folder)
    stack = LocalStack(
        port=free_port(),
        workers=args.workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(args.workers)],
        env={
            "WHISPER_MODEL": args.model,
            "ORCHESTRATOR_UPLOAD_DIR": str(folder / "uploads"),
            "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{folder / 'jobs.db'}",
            "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,  # the local media host
            "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,
        },
        log_dir=folder,
    )
    lines = []
    with stack, MediaServer(folder) as media:

        def body(path: Path, diarize: bool = False) -> dict[str, object]:
            params: dict[str, object] = {"language": "en"}
            if diarize:
                params["diarize"] = True
            return {"media_url": media.url(path.name), "params": params}

        first_segment(stack.url, body(short), leave=True)  # warm every process once
        idle, diarized = {}, {}
        for path in (short, long):
            # Idle: the job before, left after its first segment, has let go of the machine (a
            # model call already running finishes: up to a window's decode, about 1.5 s).
            time.sleep(3)
            idle[path.name] = first_segment(stack.url, body(path), leave=True)[0]
            time.sleep(3)
            diarized[path.name] = first_segment(stack.url, body(path, diarize=True), leave=True)[0]
        after: dict[float, float] = {}
        for gap in (3.0, 0.0):
            time.sleep(3)
            first_segment(stack.url, body(short), leave=True)  # a client who leaves at once...
            time.sleep(gap)
            after[gap] = first_segment(stack.url, body(long), leave=True)[0]  # ...and the next
        print(f"\nmodel {args.model}, {args.workers} workers\n")
        print(f"{'scenario':<44} {'first segment':>14}")
        for name, seconds in idle.items():
            print(f"{'idle stack: ' + name:<44} {seconds:>13.2f}s")
            ok = verdict(seconds <= 3)
            lines.append(f"{ok}  {name}, idle: first segment {seconds:.2f} s <= 3 s")
        for name, seconds in diarized.items():
            print(f"{'idle stack, diarize: ' + name:<44} {seconds:>13.2f}s")
            ok = verdict(seconds <= idle[name] + 0.5)
            lines.append(
                f"{ok}  {name}, idle, diarize: first segment {seconds:.2f} s <= "
                f"{idle[name]:.2f} s without + 0.5 s"
            )
        for gap, seconds in after.items():
            scenario = f"{gap:g} s after an abandoned job: {long.name}"
            print(f"{scenario:<44} {seconds:>13.2f}s")
            ok = verdict(seconds <= 5)
            lines.append(f"{ok}  {scenario}: first segment {seconds:.2f} s <= 5 s")
        if args.totals:
            for path in (short, long):
                _, stream_total = first_segment(stack.url, body(path), leave=False)
                json_total = run_json(stack.url, body(path))
                assert stream_total is not None
                ratio = stream_total / json_total
                print(f"{path.name}: stream {stream_total:.1f} s, JSON {json_total:.1f} s, "
                      f"ratio {ratio:.3f}")  # fmt: skip
                ok = verdict(ratio <= 1.05)
                lines.append(f"{ok}  {path.name}: stream/JSON {ratio:.3f} <= 1.05")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
