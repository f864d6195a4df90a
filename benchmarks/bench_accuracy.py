"""Words, lost speech, timing and wall time: the product against faster-whisper, side by side.

    python -m benchmarks.bench_accuracy [--model base] [--minutes 20] [--files gb,us,cs]
                                        [--concurrent 4] [--peers transcribe,batched]

Builds long files of synthetic speech with known sentence times (espeak-ng voices through
scripts/speech.py; cached in bench-results/media), then transcribes each one three ways with the
same model files, compute type and cores, one after the other:

    product      the whole stack (model server, 2 chunk workers, orchestrator) over HTTP
    transcribe   faster-whisper's `WhisperModel.transcribe` (its defaults: the long-form loop)
    batched      faster-whisper's `BatchedInferencePipeline.transcribe` (VAD chunks, batch 8)

then (with `--concurrent N`, 4 by default) sends N jobs at once to the product, the English files
in turn, against the batched pipeline's time for the same files one after the other, and
prints WER, WER of sentences next to one of the product's micro-chunk cuts vs elsewhere
(with 95% bootstrap intervals), sentences lost, duplicated words, segment-edge timing errors,
wall time, the ratios, and PASS/FAIL against the targets; a plot goes to
bench-results/accuracy.png. Needs Debian's espeak-ng to build the files (once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.speech import Block, synthesise, write_manifest, write_mp3
from services.stack import LOCAL_NETWORKS, LocalStack, free_port
from services.whisper_gpu.model_store import packaged_model_dir
from shared.cpus import available_cpus
from tests.support.media_server import MediaServer
from tests.support.real_models import audio_16k
from tests.support.scoring import HypSegment, Score, bootstrap_interval, near_cuts, score, wer_of

RESULTS = Path("bench-results")
ONE_JOB_TARGET = 0.8
"""One job's wall time at most this share of the batched pipeline's on the same file."""
CONCURRENT_TARGET = 0.9
"""N jobs at once at most this share of the batched pipeline's time for them one by one."""
LANGUAGE_BLOCKS = ("en-gb", "de", "fr", "es", "en-us", "fr", "de", "es")


def file_plan(key: str, minutes: float) -> tuple[list[Block], str | None]:
    """The blocks of a benchmark file and the language to ask for (None: detect)."""
    seconds = minutes * 60
    if key == "gb":
        return [Block("speech", seconds, voice="en-gb")], "en"
    if key == "us":
        return [Block("speech", seconds, voice="en-us")], "en"
    if key == "cs":  # code-switching: 45 s blocks, a third of the English files' length
        count = max(4, round(seconds / 3 / 45))
        voices = [LANGUAGE_BLOCKS[i % len(LANGUAGE_BLOCKS)] for i in range(count)]
        return [Block("speech", 45, voice=v) for v in voices], None
    raise SystemExit(f"unknown file {key!r}: use gb, us or cs")


def build_media(key: str, minutes: float) -> Path:
    """bench-results/media/<key>-<minutes>min.mp3 and its manifest, built once."""
    folder = RESULTS / "media"
    path = folder / f"{key}-{minutes:g}min.mp3"
    if path.exists():
        return path
    if shutil.which("espeak-ng") is None:
        raise SystemExit(
            "bench-accuracy builds its speech with espeak-ng: apt-get install espeak-ng"
        )
    folder.mkdir(parents=True, exist_ok=True)
    blocks, _ = file_plan(key, minutes)
    with tempfile.TemporaryDirectory() as tmp:
        audio, manifest = synthesise(blocks, seed=sum(map(ord, key)), workdir=Path(tmp))
        write_mp3(path, audio, Path(tmp))
    write_manifest(path.with_suffix(".json"), manifest)
    return path


@dataclass
class Run:
    system: str
    segments: list[HypSegment]
    wall_sec: float
    cuts: list[float]
    """The product's micro-chunk cuts (none for the peers)."""


def run_product(stack: LocalStack, url: str, language: str | None) -> Run:
    params: dict[str, Any] = {"language": language} if language else {}
    started = time.perf_counter()
    response = httpx.post(
        f"{stack.url}/v1/transcribe", json={"media_url": url, "params": params}, timeout=7200
    )
    wall = time.perf_counter() - started
    response.raise_for_status()
    output = response.json()
    segments = [
        HypSegment(s["start_time_sec"], s["end_time_sec"], s["text"], s["bcp47_key"])
        for s in output["segments"]
    ]
    micros = [m for macro in output["macro_chunks"] for m in macro["micro_chunks"]]
    return Run("product", segments, wall, [m["start_sec"] for m in micros[1:]])


def run_at_once(stack: LocalStack, jobs: list[tuple[str, str | None]]) -> tuple[float, list[Run]]:
    """Every (url, language) job sent to the product at the same moment; the wall time until the
    last one is done, and each run."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        started = time.perf_counter()
        runs = list(pool.map(lambda job: run_product(stack, *job), jobs))
    return time.perf_counter() - started, runs


def report_at_once(
    keys: list[str], wall: float, scores: list[Score], batched: dict[str, float]
) -> list[str]:
    """Print the N-jobs-at-once figures; return their PASS/FAIL lines."""
    one_by_one = sum(batched[key] for key in keys)
    wer = sum(s.errors for s in scores) / sum(s.reference_words for s in scores)
    lost = sum(len(s.lost) for s in scores)
    print(f"\n{len(keys)} jobs at once ({', '.join(keys)}): {wall:.1f} s; the batched pipeline "
          f"one by one: {one_by_one:.1f} s; ratio {wall / one_by_one:.3f}; WER {wer:.2%}, "
          f"sentences lost {lost}")  # fmt: skip
    return [
        f"{'PASS' if wall <= CONCURRENT_TARGET * one_by_one else 'FAIL'}  {len(keys)} jobs at "
        f"once: {wall:.1f} s <= {CONCURRENT_TARGET}x batched one by one {one_by_one:.1f} s "
        f"({wall / one_by_one:.3f}x)",
        f"{'PASS' if lost == 0 else 'FAIL'}  {len(keys)} jobs at once: sentences lost {lost} == 0",
    ]


def run_faster_whisper(system: str, model_dir: Path, path: Path, language: str | None) -> Run:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=available_cpus()
    )
    audio = audio_16k(str(path.resolve()))
    transcribe: Callable[..., Any] = model.transcribe
    kwargs: dict[str, Any] = {"language": language, "multilingual": language is None}
    if system == "batched":
        transcribe = BatchedInferencePipeline(model).transcribe
        kwargs["batch_size"] = 8
    started = time.perf_counter()
    segments, _ = transcribe(audio, **kwargs)
    hyp = [HypSegment(s.start, s.end, s.text) for s in segments]  # the generator does the work
    return Run(system, hyp, time.perf_counter() - started, [])


def language_share(manifest: dict[str, Any], segments: list[HypSegment]) -> float:
    """Sentences whose covering segment carries the sentence's language."""
    right = 0
    for sentence in manifest["sentences"]:
        middle = (sentence["start_sec"] + sentence["end_sec"]) / 2
        covering = [s for s in segments if s.start_sec - 0.3 <= middle <= s.end_sec + 0.3]
        right += bool(covering) and covering[0].language == sentence["language"]
    return right / len(manifest["sentences"])


def report(name: str, manifest: dict[str, Any], scored: list[tuple[Run, Score]]) -> list[str]:
    """Print one file's table; return its PASS/FAIL lines."""
    duration = manifest["duration_sec"]
    cuts = scored[0][0].cuts
    print(f"\n{name}: {duration / 60:.1f} min, {len(manifest['sentences'])} sentences, "
          f"{len(cuts)} micro-chunk cuts in the product (near-cut sentences: the one before and "
          "the one after each cut)")  # fmt: skip
    header = (
        f"{'system':<11} {'WER':>6} {'near cuts [95% CI]':>22} {'elsewhere [95% CI]':>22} "
        f"{'lost':>5} {'dup':>4} {'edge err p95':>12} {'misplaced':>9} {'wall':>8} {'x real':>7}"
    )
    print(header)
    for run, result in scored:
        near, far = near_cuts(result, cuts)
        near_ci, far_ci = bootstrap_interval(near), bootstrap_interval(far)
        errors = sorted(abs(e) for e in result.start_errors + result.end_errors)
        p95 = errors[int(0.95 * (len(errors) - 1))] if errors else 0.0
        print(
            f"{run.system:<11} {result.wer:>6.2%} "
            f"{wer_of(near):>6.2%} [{near_ci[0]:>5.1%},{near_ci[1]:>5.1%}] "
            f"{wer_of(far):>6.2%} [{far_ci[0]:>5.1%},{far_ci[1]:>5.1%}] "
            f"{len(result.lost):>5} {result.duplicated_words:>4} {p95:>11.2f}s "
            f"{result.misplaced_segments:>9} {run.wall_sec:>7.1f}s {duration / run.wall_sec:>7.1f}"
        )
    (product, ours), *peers = scored
    best_peer = min(result.wer for _, result in peers)
    walls = {run.system: run.wall_sec for run, _ in peers}
    batched_wall = walls["batched"]
    near, far = near_cuts(ours, product.cuts)
    near_ci, far_ci = bootstrap_interval(near), bootstrap_interval(far)
    print(f"ratios: WER product / best peer {ours.wer / best_peer:.3f}; wall "
          + ", ".join(f"product / {system} {product.wall_sec / wall:.3f}"
                      for system, wall in walls.items()))  # fmt: skip
    verdicts = [
        (f"WER {ours.wer:.2%} <= best peer {best_peer:.2%}", ours.wer <= best_peer),
        (f"sentences lost {len(ours.lost)} == 0", not ours.lost),
        (
            f"near-cut WER {wer_of(near):.2%} within noise of elsewhere {wer_of(far):.2%} "
            "(intervals overlap)",
            near_ci[0] <= far_ci[1],
        ),
        (
            f"wall {product.wall_sec:.1f} s <= 0.8x batched {batched_wall:.1f} s "
            f"({product.wall_sec / batched_wall:.3f}x)",
            product.wall_sec <= ONE_JOB_TARGET * batched_wall,
        ),
    ]
    if any(s.get("language", "en") != "en" for s in manifest["sentences"]):
        share = language_share(manifest, product.segments)
        verdicts.append((f"right language on {share:.1%} of sentences >= 95%", share >= 0.95))
    return [f"{'PASS' if ok else 'FAIL'}  {name}: {text}" for text, ok in verdicts]


def plot(rows: list[tuple[str, list[tuple[Run, Score]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [run.system for run, _ in rows[0][1]]
    fig, (wer_axis, wall_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(systems)
    for k, system in enumerate(systems):
        xs = [i + k * width for i in range(len(rows))]
        wers = [100 * dict((r.system, s) for r, s in scored)[system].wer for _, scored in rows]
        walls = [dict((r.system, r) for r, _ in scored)[system].wall_sec for _, scored in rows]
        wer_axis.bar(xs, wers, width, label=system)
        wall_axis.bar(xs, walls, width, label=system)
    for axis, title in ((wer_axis, "WER (%, lower is better)"), (wall_axis, "wall time (s)")):
        axis.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(rows))])
        axis.set_xticklabels([name for name, _ in rows])
        axis.set_title(title)
        axis.legend()
    fig.suptitle("Whisperfleet vs faster-whisper: same model, same cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="base", choices=("base", "tiny.en"))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--files", default="gb,us,cs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--concurrent", type=int, default=4, help="jobs at once (English files in turn); 0: none"
    )
    parser.add_argument("--peers", default="transcribe,batched")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    if "batched" not in peers or not set(peers) <= {"transcribe", "batched"}:
        raise SystemExit("--peers: batched, and optionally transcribe")
    keys = [k for k in args.files.split(",") if k]
    if args.model == "tiny.en" and "cs" in keys:
        keys.remove("cs")  # an English-only model has no languages to switch between
    RESULTS.mkdir(exist_ok=True)
    media = {key: build_media(key, args.minutes) for key in keys}
    cache = (RESULTS / "models").resolve()
    model_dir = packaged_model_dir(args.model, cache)

    # The product first, for every file; then the stack stops and each peer gets the machine.
    product_runs: dict[str, Run] = {}
    stack = LocalStack(
        port=free_port(),
        workers=args.workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(args.workers)],
        env={
            "WHISPER_MODEL": args.model,
            "WHISPER_MODEL_CACHE_DIR": str(cache),
            "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,  # the local media host
            "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,
        },
        log_dir=Path(tempfile.mkdtemp(prefix="bench-accuracy-")),
    )
    with stack, MediaServer(RESULTS / "media") as server:
        for key, path in media.items():
            language = file_plan(key, args.minutes)[1]
            product_runs[key] = run_product(stack, server.url(path.name), language)
            print(f"{path.name}: product {product_runs[key].wall_sec:.1f} s", flush=True)
        english = [key for key in keys if file_plan(key, args.minutes)[1]]
        at_once = [english[i % len(english)] for i in range(args.concurrent)] if english else []
        if at_once:
            jobs = [(server.url(media[k].name), file_plan(k, args.minutes)[1]) for k in at_once]
            at_once_wall, at_once_runs = run_at_once(stack, jobs)
            print(f"{len(jobs)} jobs at once: {at_once_wall:.1f} s", flush=True)
    rows = []
    verdicts = []
    for key, path in media.items():
        manifest = json.loads(path.with_suffix(".json").read_text())
        language = file_plan(key, args.minutes)[1]
        runs = [product_runs[key]]
        for system in peers:
            runs.append(run_faster_whisper(system, model_dir, path, language))
            print(f"{path.name}: {system} {runs[-1].wall_sec:.1f} s", flush=True)
        scored = [(run, score(manifest, run.segments)) for run in runs]
        rows.append((path.stem, scored))
        verdicts += report(path.stem, manifest, scored)
    if at_once:
        batched = {name: dict((r.system, r) for r, _ in scored)["batched"].wall_sec
                   for name, scored in rows}  # fmt: skip
        manifests = {k: json.loads(media[k].with_suffix(".json").read_text()) for k in at_once}
        at_once_scores = [
            score(manifests[k], r.segments) for k, r in zip(at_once, at_once_runs, strict=True)
        ]
        verdicts += report_at_once(
            at_once, at_once_wall, at_once_scores,
            {key: batched[media[key].stem] for key in at_once},
        )  # fmt: skip
    plot(rows, RESULTS / "accuracy.png")
    print(
        f"\nmodel {args.model} (int8), {available_cpus()} CPUs; plot: {RESULTS / 'accuracy.png'}\n"
    )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
