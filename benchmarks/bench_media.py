"""Media pipeline benchmark: bytes fetched, first micro chunk, worker memory, cut quality.

    python -m benchmarks.bench_media [--formats mp3,m4a,opus] [--hours 2] [--workdir DIR]

Builds a long file from the committed speech (`tests/media/speech_200s.mp3`, looped with
`ffmpeg -stream_loop N -c copy`; m4a and opus are encoded once from it, then looped), serves it
from `tests.support.media_server.MediaServer` (a range-capable host that counts the bytes it
sends) and runs the chunk worker's real media code on it, in process:

- whole file: the orchestrator's plan (even grid of 300 s macro chunks, each boundary moved
  into the quietest point of a +/-5 s window by `find_silence`), the boundary searches and then
  every macro chunk streamed through `ChunkTranscriber`, 4 at a time, spread round-robin over
  4 simulated workers, each with its own `RangeProxy` (so each fetches a file's index once);
  all bytes the host sent / file size (FFmpeg reads only through the proxy: the service has no
  other way, so there is no proxy-less figure any more)
- one 300 s window in the middle, by a worker new to the file: bytes sent / the window's share
- time to the first micro chunk: from calling `ChunkTranscriber.stream` (sniffing included) on
  a worker new to the file, to the first call of the (fake, in-process) model client
- worker peak RSS for a 300 s and an 1800 s range, each in a fresh subprocess with a fake model
  client that takes a while per clip (so `max_inflight_clips` back-pressure is exercised)
- cuts against the manifest (extended by the loop offsets): micro cuts (ours vs a fixed 30 s
  grid) and macro boundaries (ours vs the nominal grid) inside pauses, counting only search
  windows that contain a pause of at least 300 ms
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import imageio_ffmpeg
import numpy as np

from services.chunk_worker.access import MediaAccess
from services.chunk_worker.media import FetchOptions, PcmSource, sniff_media
from services.chunk_worker.metrics import WorkerMetrics
from services.chunk_worker.pipeline import ChunkTranscriber
from services.chunk_worker.range_proxy import RangeProxy
from services.chunk_worker.speakers import Speakers
from services.orchestrator.transcription.planning import (
    nominal_boundaries,
    search_window,
    spans_from_boundaries,
)
from shared.aio import gather_bounded
from shared.clients import ModelServerClient
from shared.media_host import AddressPolicy
from shared.schemas import (
    SAMPLE_RATE_HZ,
    ChunkRequest,
    ClipTranscription,
    DecodeOptions,
    SilenceRequest,
    TimeSpan,
    TranscribeParams,
)
from shared.vad import Span

if TYPE_CHECKING:  # imported where used: the RSS probe process must not load them
    from tests.support.media_server import MediaServer

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "media" / "speech_200s.mp3"
MANIFEST = ROOT / "tests" / "media" / "speech_200s.json"

MACRO_SEC = 300.0
MICRO_SEC = 30.0
SMOOTHING = 3200
BOUNDARY_SEARCH_SEC = 5.0
CONCURRENT_CHUNKS = 4
WORKERS = 4
MAX_INFLIGHT_CLIPS = 8
MIN_PAUSE_SEC = 0.3

TARGET_BYTES_RATIO = 1.25
TARGET_RSS_RATIO = 1.2
TARGET_FIRST_CHUNK_SEC = 0.5

# name -> (encode args for one loop, or None to copy the source; file suffix)
FORMATS: dict[str, tuple[list[str] | None, str]] = {
    "mp3": (None, "mp3"),
    "m4a": (["-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart"], "m4a"),
    "opus": (["-c:a", "libopus", "-b:a", "24k", "-f", "ogg"], "opus"),
}


# -- test media --------------------------------------------------------------------------------


@dataclass
class LongFile:
    name: str
    path: Path
    size: int
    duration_sec: float = 0.0
    loop_starts: list[float] = field(default_factory=list)


def ffmpeg(*args: str) -> bytes:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args]
    return subprocess.run(command, check=True, capture_output=True).stdout


def decode(path: Path, *input_args: str, seconds: float) -> np.ndarray:
    pcm = ffmpeg(*input_args, "-i", str(path), "-t", str(seconds), "-ac", "1", "-ar", "16000",
                 "-f", "s16le", "pipe:1")  # fmt: skip
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def build(name: str, workdir: Path, hours: float) -> LongFile:
    """`hours` of the committed speech in one format, by looping one encoded copy."""
    encode, suffix = FORMATS[name]
    one = SOURCE
    if encode is not None:
        one = workdir / f"one.{suffix}"
        ffmpeg("-i", str(SOURCE), *encode, str(one))
    loops = int(hours * 3600 / 200) + 1
    path = workdir / f"speech_{hours:g}h.{suffix}"
    extra = ["-movflags", "+faststart"] if suffix == "m4a" else []
    ffmpeg("-stream_loop", str(loops), "-i", str(one), "-c", "copy", "-t", str(hours * 3600),
           *extra, str(path))  # fmt: skip
    return LongFile(name, path, path.stat().st_size)


def best_offset(search: np.ndarray, reference: np.ndarray) -> int:
    """Where `reference` best matches inside `search` (FFT cross-correlation)."""
    size = 1 << int(np.ceil(np.log2(len(search) + len(reference))))
    scores = np.fft.irfft(np.fft.rfft(search, size) * np.conj(np.fft.rfft(reference, size)), size)
    return int(np.argmax(scores[: len(search) - len(reference) + 1]))


def loop_starts(path: Path, nominal_sec: float, duration_sec: float) -> list[float]:
    """Where each loop's audio starts, measured: `-stream_loop -c copy` repeats each loop's
    encoder delay and padding, and MP4 loops can shift by a packet."""
    reference = decode(path, seconds=11)[SAMPLE_RATE_HZ:]  # 1-11 s of the first loop
    starts = [0.0]
    while starts[-1] + nominal_sec + 12 < duration_sec:
        low = starts[-1] + nominal_sec + 1 - 1.0  # search +/-1 s around the expected start
        search = decode(path, "-ss", f"{low:.6f}", seconds=12)
        starts.append(low + best_offset(search, reference) / SAMPLE_RATE_HZ - 1.0)
    return starts


def boundary_windows(count: int, duration_sec: float) -> list[tuple[float, float]]:
    """Where the orchestrator looks for each inner boundary of `count` macro chunks."""
    return [search_window(i, count, duration_sec, BOUNDARY_SEARCH_SEC) for i in range(count - 1)]


def looped_pauses(starts: list[float], duration_sec: float) -> list[tuple[float, float]]:
    """Gaps between sentences over the whole long file (the manifest shifted per loop)."""
    manifest = json.loads(MANIFEST.read_text())
    sentences = [(float(s["start_sec"]), float(s["end_sec"])) for s in manifest["sentences"]]
    spans = [
        (start + a, min(start + b, duration_sec))
        for start in starts
        for a, b in sentences
        if start + a < duration_sec
    ]
    gaps, previous_end = [], 0.0
    for start, end in spans:
        gaps.append((previous_end, start))
        previous_end = end
    gaps.append((previous_end, duration_sec))
    return gaps


# -- the fake model client ---------------------------------------------------------------------


class FakeModelServer(ModelServerClient):
    """Records when clips arrive and answers with no segments after `delay_sec`."""

    def __init__(self, delay_sec: float = 0.0) -> None:  # no ServiceClient: nothing is sent
        self.delay_sec = delay_sec
        self.calls: list[float] = []
        self.first_call = asyncio.Event()

    async def transcribe_clip(
        self,
        wav: bytes,
        options: DecodeOptions,
        position_sec: float | None = None,
        speech: list[Span] | None = None,
        language_hint: str | None = None,
    ) -> ClipTranscription:
        self.calls.append(time.perf_counter())
        self.first_call.set()
        if self.delay_sec:
            await asyncio.sleep(self.delay_sec)
        duration = (len(wav) - 44) / 2 / SAMPLE_RATE_HZ
        return ClipTranscription(
            segments=[], language="en", language_probability=1.0, duration_sec=duration
        )


async def drain(items: AsyncIterator[object]) -> None:
    async for _ in items:
        pass


def params() -> TranscribeParams:
    return TranscribeParams(
        micro_chunk_size_sec=MICRO_SEC,
        macro_chunk_size_sec=MACRO_SEC,
        silence_detection_smoothing_num_samples=SMOOTHING,
        language="en",
    )


def fetch_options(proxy: RangeProxy | None) -> FetchOptions:
    return FetchOptions(ffmpeg_path=imageio_ffmpeg.get_ffmpeg_exe(), proxy=proxy)


LOCAL = ["127.0.0.0/8"]
"""What the workers (and the probe) may reach: the benchmark's media host on this machine."""


@asynccontextmanager
async def worker(whisper: ModelServerClient) -> AsyncIterator[ChunkTranscriber]:
    """The worker's core as the app builds it (worker defaults: its own media access and range
    proxy, so a file's index is fetched once per worker), with a fake model client."""
    access = MediaAccess(
        AddressPolicy.parse(LOCAL), [], {}, read_timeout_sec=30.0, keep_bytes=32 << 20
    )
    async with access:
        yield ChunkTranscriber(
            whisper,
            access,
            fetch_options(None),
            MAX_INFLIGHT_CLIPS,
            WorkerMetrics(),
            Speakers(None),
        )


@asynccontextmanager
async def workers(count: int) -> AsyncIterator[list[ChunkTranscriber]]:
    """`count` simulated chunk workers, each with its own range proxy (its own cache)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(worker(FakeModelServer())) for _ in range(count)]


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Results:
    name: str
    size: int
    duration_sec: float
    search_bytes: int = 0
    chunk_bytes: int = 0
    whole_sec: float = 0.0
    """The whole file again with FFmpeg fetching on its own (no proxy), for comparison."""
    window_bytes: int = 0
    window_share: float = 0.0
    first_chunk_sec: list[float] = field(default_factory=list)
    rss_kib: dict[int, int] = field(default_factory=dict)
    baseline_kib: dict[int, int] = field(default_factory=dict)
    micro: dict[str, tuple[int, int]] = field(default_factory=dict)
    macro: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def whole_ratio(self) -> float:
        return (self.search_bytes + self.chunk_bytes) / self.size

    @property
    def window_ratio(self) -> float:
        return self.window_bytes / self.window_share


async def whole_file(
    server: MediaServer,
    file: LongFile,
    http: httpx.AsyncClient,
    results: Results,
) -> tuple[list[TimeSpan], list[float], list[float]]:
    """The orchestrator's plan over the whole file, spread round-robin over `WORKERS` workers;
    returns the spans, the boundaries and the micro cuts."""
    url = server.url(file.path.name)
    path = f"/media/{file.path.name}"
    duration = file.duration_sec
    started = time.perf_counter()
    async with workers(WORKERS) as fleet:
        server.traffic.reset()
        nominal = nominal_boundaries(duration, MACRO_SEC)
        windows = boundary_windows(len(nominal) + 1, duration)
        requests = [
            SilenceRequest(
                media_url=url,
                start_sec=low,
                end_sec=high,
                smoothing_num_samples=SMOOTHING,
            )
            for low, high in windows
        ]
        splits = await gather_bounded(
            (fleet[i % WORKERS].find_silence(r) for i, r in enumerate(requests)),
            CONCURRENT_CHUNKS,
        )
        search_bytes = server.traffic.bytes_by_path.get(path, 0)
        boundaries = [split.split_sec for split in splits]
        spans = spans_from_boundaries(duration, boundaries)

        async def one_chunk(worker: ChunkTranscriber, span: TimeSpan) -> list[float]:
            request = ChunkRequest(
                media_url=url,
                start_sec=span.start_sec,
                end_sec=span.end_sec,
                params=params(),
            )
            reports = [item.micro_chunk async for item in worker.stream(request)]
            return [report.end_sec for report in reports[:-1]]

        server.traffic.reset()
        cuts_per_chunk = await gather_bounded(
            (one_chunk(fleet[i % WORKERS], span) for i, span in enumerate(spans)),
            CONCURRENT_CHUNKS,
        )
        chunk_bytes = server.traffic.bytes_by_path.get(path, 0)
    results.search_bytes, results.chunk_bytes = search_bytes, chunk_bytes
    results.whole_sec = time.perf_counter() - started
    return spans, boundaries, [cut for cuts in cuts_per_chunk for cut in cuts]


async def middle_window(
    server: MediaServer, file: LongFile, http: httpx.AsyncClient, results: Results
) -> None:
    url = server.url(file.path.name)
    start = round(file.duration_sec / 2 - MACRO_SEC / 2)
    server.traffic.reset()
    async with RangeProxy(http) as proxy:  # a worker that has not seen the file yet
        mode = await sniff_media(proxy, url)
        async with PcmSource(url, start, start + MACRO_SEC, mode, fetch_options(proxy)) as source:
            async for _ in source.blocks():
                pass
    results.window_bytes = server.traffic.bytes_by_path.get(f"/media/{file.path.name}", 0)
    results.window_share = file.size * MACRO_SEC / file.duration_sec


async def first_chunk(
    server: MediaServer, file: LongFile, http: httpx.AsyncClient, results: Results, runs: int = 3
) -> None:
    url = server.url(file.path.name)
    for run in range(runs):
        whisper = FakeModelServer()
        async with worker(whisper) as transcriber:  # a worker that has not seen the file yet
            start = round((file.duration_sec - MACRO_SEC) * (run + 1) / (runs + 1))
            request = ChunkRequest(
                media_url=url,
                start_sec=start,
                end_sec=start + MACRO_SEC,
                params=params(),
            )
            began = time.perf_counter()
            task = asyncio.create_task(drain(transcriber.stream(request)))
            first_call = asyncio.create_task(whisper.first_call.wait())
            await asyncio.wait({task, first_call}, return_when=asyncio.FIRST_COMPLETED)
            first_call.cancel()
            task.cancel()  # the rest of the range doesn't matter here
            with contextlib.suppress(asyncio.CancelledError):
                await task  # raises if the range failed before any clip left
        results.first_chunk_sec.append(whisper.calls[0] - began)


def peak_rss(url: str, start_sec: float, end_sec: float) -> tuple[int, int]:
    """The worker's (peak, baseline) RSS in KiB transcribing one range, in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.bench_media", "--rss-probe", url,
               str(start_sec), str(end_sec)]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    probe = json.loads(output.strip().splitlines()[-1])
    return int(probe["peak_rss_kib"]), int(probe["baseline_rss_kib"])


def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


async def rss_probe(url: str, start_sec: float, end_sec: float) -> None:
    """Entry point of the RSS subprocess: stream one range with a slow fake model client.

    Only the worker's own modules are imported here (the media host, PyAV and the orchestrator
    are imported lazily by the parent), so the baseline is small and growth shows."""
    whisper = FakeModelServer(delay_sec=0.25)
    async with worker(whisper) as transcriber:
        request = ChunkRequest(
            media_url=url,
            start_sec=start_sec,
            end_sec=end_sec,
            params=params(),
        )
        baseline = _status_kib("VmRSS")
        count = 0
        async for _ in transcriber.stream(request):
            count += 1
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_rss_kib": peak, "baseline_rss_kib": baseline, "micro_chunks": count}))


# -- cut quality -------------------------------------------------------------------------------


def in_pause(time_sec: float, gaps: Sequence[tuple[float, float]]) -> bool:
    return any(start <= time_sec <= end for start, end in gaps)


def has_pause(low: float, high: float, gaps: Sequence[tuple[float, float]]) -> bool:
    return any(min(end, high) - max(start, low) >= MIN_PAUSE_SEC for start, end in gaps)


def score(
    cuts: Sequence[tuple[float, tuple[float, float]]], gaps: Sequence[tuple[float, float]]
) -> tuple[int, int]:
    """(cuts inside pauses, cuts counted): only cuts whose search window holds a pause."""
    counted = [cut for cut, (low, high) in cuts if has_pause(low, high, gaps)]
    return sum(in_pause(cut, gaps) for cut in counted), len(counted)


def cut_quality(
    results: Results,
    file: LongFile,
    spans: list[TimeSpan],
    boundaries: list[float],
    micro_cuts: list[float],
) -> None:
    gaps = looped_pauses(file.loop_starts, file.duration_sec)
    nominal = nominal_boundaries(file.duration_sec, MACRO_SEC)
    windows = boundary_windows(len(nominal) + 1, file.duration_sec)
    results.macro["ours"] = score(list(zip(boundaries, windows, strict=True)), gaps)
    results.macro["grid"] = score(list(zip(nominal, windows, strict=True)), gaps)
    ours: list[tuple[float, tuple[float, float]]] = []
    starts = sorted([span.start_sec for span in spans] + micro_cuts)
    for start, cut in itertools.pairwise(starts):
        if cut in micro_cuts:
            ours.append((cut, (start + MICRO_SEC / 2, start + MICRO_SEC)))
    grid: list[tuple[float, tuple[float, float]]] = []
    for span in spans:
        cut = span.start_sec + MICRO_SEC
        while cut < span.end_sec:
            grid.append((cut, (cut - MICRO_SEC / 2, cut)))
            cut += MICRO_SEC
    results.micro["ours"] = score(ours, gaps)
    results.micro["grid"] = score(grid, gaps)


# -- report ------------------------------------------------------------------------------------


def share(counts: tuple[int, int]) -> str:
    inside, total = counts
    return f"{inside}/{total} ({100 * inside / total:.0f}%)" if total else "n/a"


def report(all_results: list[Results]) -> bool:
    rows: list[tuple[str, list[str]]] = [
        ("file size (MB)", [f"{r.size / 1e6:.1f}" for r in all_results]),
        ("duration (s)", [f"{r.duration_sec:.0f}" for r in all_results]),
        ("whole file: boundary search (MB)", [f"{r.search_bytes / 1e6:.2f}" for r in all_results]),
        ("whole file: macro chunks (MB)", [f"{r.chunk_bytes / 1e6:.2f}" for r in all_results]),
        ("whole file: fetched / size", [f"{r.whole_ratio:.3f}" for r in all_results]),
        ("whole file: wall time (s)", [f"{r.whole_sec:.1f}" for r in all_results]),
        ("300 s middle window (MB)", [f"{r.window_bytes / 1e6:.2f}" for r in all_results]),
        ("300 s window: fetched / share", [f"{r.window_ratio:.2f}" for r in all_results]),
        (
            "first micro chunk out (s, worst of 3)",
            [f"{max(r.first_chunk_sec):.3f}" for r in all_results],
        ),
        (
            "first micro chunk out (s, median)",
            [f"{statistics.median(r.first_chunk_sec):.3f}" for r in all_results],
        ),
        (
            "RSS before streaming (MiB)",
            [f"{r.baseline_kib[300] / 1024:.1f}" for r in all_results],
        ),
        ("peak RSS, 300 s range (MiB)", [f"{r.rss_kib[300] / 1024:.1f}" for r in all_results]),
        ("peak RSS, 1800 s range (MiB)", [f"{r.rss_kib[1800] / 1024:.1f}" for r in all_results]),
        (
            "peak RSS ratio 1800 s / 300 s",
            [f"{r.rss_kib[1800] / r.rss_kib[300]:.3f}" for r in all_results],
        ),
        ("micro cuts in pauses: ours", [share(r.micro["ours"]) for r in all_results]),
        ("micro cuts in pauses: fixed 30 s grid", [share(r.micro["grid"]) for r in all_results]),
        ("macro cuts in pauses: ours", [share(r.macro["ours"]) for r in all_results]),
        ("macro cuts in pauses: nominal grid", [share(r.macro["grid"]) for r in all_results]),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{r.name:>16}" for r in all_results))
    for label, values in rows:
        print(f"{label:{width}}  " + "  ".join(f"{v:>16}" for v in values))
    print()
    ok = True

    def verdict(target: str, passed: bool, detail: str) -> None:
        nonlocal ok
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {target}: {detail}")

    for r in all_results:
        verdict(f"{r.name} whole-file bytes <= {TARGET_BYTES_RATIO}x size",
                r.whole_ratio <= TARGET_BYTES_RATIO, f"{r.whole_ratio:.3f}x")  # fmt: skip
    for r in all_results:
        counts = [r.micro["ours"], r.macro["ours"]]
        verdict(
            f"{r.name} 100% of cuts in pauses where the window has a >= 300 ms pause",
            all(inside == total for inside, total in counts),
            f"micro {share(r.micro['ours'])}, macro {share(r.macro['ours'])}",
        )
    for r in all_results:
        ratio = r.rss_kib[1800] / r.rss_kib[300]
        verdict(f"{r.name} peak RSS 1800 s / 300 s <= {TARGET_RSS_RATIO}",
                ratio <= TARGET_RSS_RATIO, f"{ratio:.3f}")  # fmt: skip
    for r in all_results:
        worst = max(r.first_chunk_sec)
        verdict(f"{r.name} first micro chunk out within {TARGET_FIRST_CHUNK_SEC} s",
                worst <= TARGET_FIRST_CHUNK_SEC, f"{worst:.3f} s (worst of 3)")  # fmt: skip
    return ok


async def run_format(name: str, workdir: Path, hours: float) -> Results:
    started = time.perf_counter()
    file = build(name, workdir, hours)
    from services.orchestrator.transcription.probe import (
        probe_duration,  # PyAV: not in the RSS probe
    )
    from tests.support.media_server import MediaServer  # uvicorn: not in the RSS probe

    with MediaServer(workdir) as server:
        url = server.url(file.path.name)
        policy = AddressPolicy.parse(LOCAL)
        file.duration_sec = await asyncio.to_thread(probe_duration, url, policy, 30.0)
        nominal = float(json.loads(MANIFEST.read_text())["duration_sec"])
        file.loop_starts = await asyncio.to_thread(
            loop_starts, file.path, nominal, file.duration_sec
        )
        results = Results(name, file.size, file.duration_sec)
        print(
            f"[{name}] built {file.path.name}: {file.size / 1e6:.1f} MB, "
            f"{file.duration_sec:.0f} s, {len(file.loop_starts)} loops "
            f"({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        async with httpx.AsyncClient(timeout=60) as http:
            spans, boundaries, micro_cuts = await whole_file(server, file, http, results)
            print(f"[{name}] whole file in {results.whole_sec:.1f} s", flush=True)
            await middle_window(server, file, http, results)
            await first_chunk(server, file, http, results)
        middle = round(file.duration_sec / 2 - 900)
        for length in (300, 1800):
            peak, baseline = await asyncio.to_thread(peak_rss, url, middle, middle + length)
            results.rss_kib[length], results.baseline_kib[length] = peak, baseline
        cut_quality(results, file, spans, boundaries, micro_cuts)
    print(f"[{name}] done in {time.perf_counter() - started:.1f} s", flush=True)
    return results


async def main(formats: list[str], hours: float, workdir: Path) -> bool:
    results = [await run_format(name, workdir, hours) for name in formats]
    return report(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rss-probe", nargs=3, metavar=("URL", "START", "END"))
    args = parser.parse_args()
    if args.rss_probe:
        url, start, end = args.rss_probe
        asyncio.run(rss_probe(url, float(start), float(end)))
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        passed = asyncio.run(main(args.formats.split(","), args.hours, workdir))
    sys.exit(0 if passed else 1)
