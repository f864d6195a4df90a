"""Who spoke when: DER and speakers found, the product against the same models run whole-file and
against senko, side by side on our own espeak-ng conversations.

    python -m benchmarks.bench_diarization [--model base|tiny.en] [--quick] [--meeting-minutes 120]

Generates its conversations at run time into a temporary folder (scripts/make_conversations.py;
needs Debian's espeak-ng): 2 voices for 10 min, 4 voices for 10 min and a 4-voice meeting of
2 h (the long part: `--quick` leaves it out). Real recordings come first (`--no-real` leaves
them out): a 30 s two-speaker phone call and 7 min of AMI meeting excerpts with 27 speakers,
from a pinned PyPI sdist (benchmarks/real_recordings.py). Then, one system after the other on
the same cores:

    product      the whole stack (model server, 2 chunk workers, orchestrator), POST
                 /v1/transcribe with `diarize: true` and macro chunks of 120 s; the hypothesis is
                 the returned `speaker_turns` (who spoke when); a second row scores the
                 labelled segments as turns (speech without words counts as missed). The job
                 without `diarize` gives the wall-time cost; on the 4-voice file a third job
                 names two voices by 5 s reference clips (`known_speaker_names/references`).
                 The jobs with and without `diarize` run in turn, twice (`--repeats`), and
                 the faster of each counts: this machine's speed drifts over minutes.
    reference    the same ONNX models in one process over the whole file:
                 shared.diarization's local_speakers over all of it, then cluster_speakers.
    senko        senko 0.2.2 (the peer), run by the python in $BENCH_SENKO_PYTHON (a throwaway
                 venv: `python3 -m venv /tmp/senko && /tmp/senko/bin/pip install senko==0.2.2`,
                 which pulls torch) on a 16 kHz mono WAV of the same MP3; skipped when unset.

DER is scored the standard way (tests/support/der.py: 0.25 s collar, overlapped reference speech
not scored, optimal label mapping; the reference bridges a speaker's pauses under 0.3 s). A known
speaker is scored both ways: the share of their speech under their name, and the share of what
carries their name that is their speech. Prints one table per file, the targets next to the
figures, PASS/FAIL lines, and writes every figure to bench-results/diarization.json. Under each
table, where /proc is: the CPU each service used for the jobs with and without `diarize`. The
chunk workers' difference is what diarization costs; the model server's share moves by a few
percent between identical jobs (47-50 CPU-seconds for the same 10-minute file, one clip per
model call on CPU), which is the noise in the wall time's ratio.
`--systems senko` needs neither the stack nor the diarization models.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import imageio_ffmpeg
import numpy as np
from faster_whisper.audio import decode_audio

from benchmarks.real_recordings import Recording, recordings
from scripts.make_conversations import (
    Conversation,
    make_conversation,
    reference_clip,
    reference_turns,
    wav_data_url,
)
from services.stack import LOCAL_NETWORKS, LocalStack, free_port
from shared.cpus import available_cpus
from tests.support.der import (
    DiarizationError,
    Turn,
    diarization_error,
    labelled_share,
    named_precision,
)
from tests.support.media_server import MediaServer

if TYPE_CHECKING:
    from shared.diarization.models import SpeakerModels

RESULTS = Path("bench-results")
MACRO_CHUNK_SEC = 120.0
DEFAULT_MODELS_DIR = Path.home() / ".cache" / "whisperfleet" / "models"

# Targets (issue 16).
REAL_CACHE = Path.home() / ".cache" / "whisperfleet" / "bench"
"""Where the real recordings' sdist is kept."""
MAX_COUNTED_SPEAKERS = 8
"""Files with more speakers than this get no speaker-count verdict."""
SCALE_OUT_POINTS = 1.0
"""The product's DER may exceed the whole-file reference's by at most this (points)."""
NAMED_SHARE = 0.90
"""Known speakers labelled with their name on at least this share of their speech."""
WALL_RATIO = 1.15
"""A diarized job's wall time against the same job without."""

SENKO_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import senko
diarizer = senko.Diarizer(device="cpu", quiet=True)  # warmed up, as the stack is
loaded = time.perf_counter()
result = diarizer.diarize(sys.argv[1])
done = time.perf_counter()
segments = [] if result is None else [
    [s["start"], s["end"], str(s["speaker"])] for s in result["merged_segments"]
]
print(json.dumps({"segments": segments, "load_sec": loaded - started, "wall_sec": done - loaded}))
"""
"""Run by $BENCH_SENKO_PYTHON: senko's own API on a 16 kHz mono WAV; the last stdout line is
the result (model loading timed apart)."""


@dataclass(frozen=True)
class BenchFile:
    name: str
    conversation: Conversation | None
    """None: a real recording (benchmarks/real_recordings.py)."""
    known: tuple[str, ...] = ()
    """Speakers the known-speaker job names by a reference clip."""


def bench_files(quick: bool, meeting_minutes: float) -> list[BenchFile]:
    four = ("Ann", "Ben", "Cat", "Dan")
    files = [
        BenchFile("2v-10min", Conversation(("Ann", "Ben"), 600, seed=102)),
        BenchFile("4v-10min", Conversation(four, 600, seed=104), known=("Ann", "Cat")),
    ]
    if not quick:
        minutes = (
            f"{meeting_minutes:g}min" if meeting_minutes < 120 else f"{meeting_minutes / 60:g}h"
        )
        files.append(BenchFile(f"4v-{minutes}", Conversation(four, meeting_minutes * 60, seed=120)))
    return files


@dataclass
class Media:
    file: BenchFile
    mp3: Path
    wav: Path
    manifest: dict[str, Any]
    references: dict[str, str] = field(default_factory=dict)
    """Known speaker -> a 5 s clip of their voice alone, as a data URL."""
    make_sec: float = 0.0
    real: Recording | None = None

    @property
    def reference(self) -> list[Turn]:
        return self.real.reference if self.real else reference_turns(self.manifest)


def real_media(recording: Recording) -> Media:
    speakers = sorted({who for _, _, who in recording.reference})
    manifest = {"duration_sec": recording.duration_sec, "speakers": speakers, "turns": []}
    file = BenchFile(recording.name, None)
    return Media(file, recording.wav, recording.wav, manifest, real=recording)


@dataclass
class Run:
    system: str
    turns: list[Turn]
    wall_sec: float
    note: str = ""
    cpu_sec: dict[str, float] | None = None
    """CPU seconds each of the stack's services used during the job (children included; Linux
    /proc only): where diarization's cost lands, apart from the wall time's drift."""


def make_media(file: BenchFile, folder: Path, workdir: Path) -> Media:
    assert file.conversation is not None
    started = time.perf_counter()
    mp3 = folder / f"{file.name}.mp3"
    manifest = make_conversation(file.conversation, mp3, workdir)
    media = Media(file, mp3, mp3.with_suffix(".wav"), manifest)
    media.make_sec = time.perf_counter() - started
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(mp3),
               "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(media.wav)]  # fmt: skip
    subprocess.run(command, check=True)
    for speaker in file.known:
        media.references[speaker] = wav_data_url(reference_clip(speaker, workdir, seconds=5.0))
    return media


def params(diarize: bool, known: dict[str, str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"language": "en", "macro_chunk_size_sec": MACRO_CHUNK_SEC}
    if diarize:
        params["diarize"] = True
    if known:
        params["known_speaker_names"] = list(known)
        params["known_speaker_references"] = list(known.values())
    return params


def stack_cpu_sec(stack: LocalStack) -> dict[str, float] | None:
    """CPU seconds used so far by each service process and its children (user + system), from
    /proc/<pid>/stat; None where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used = {}
    for service in stack.services:
        assert service.process is not None
        try:
            fields = Path(f"/proc/{service.process.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return None
        utime, stime, cutime, cstime = (int(x) for x in fields.split()[11:15])
        used[service.name] = (utime + stime + cutime + cstime) / tick
    return used


def run_product(stack: LocalStack, url: str, system: str, job: dict[str, Any]) -> list[Run]:
    """The job through /v1/transcribe: scored on its speaker turns (who spoke when), and for a
    diarized job a second row on its labelled segments (what a transcript reader sees: speech
    without words, backchannels, counts as missed there)."""
    cpu_before = stack_cpu_sec(stack)
    started = time.perf_counter()
    response = httpx.post(
        f"{stack.url}/v1/transcribe", json={"media_url": url, "params": job}, timeout=14400
    )
    wall = time.perf_counter() - started
    cpu_after = stack_cpu_sec(stack)
    cpu = (
        {name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after}
        if cpu_before and cpu_after
        else None
    )
    if response.status_code != 200:
        raise SystemExit(f"{system}: HTTP {response.status_code}: {response.text[:500]}")
    output = response.json()
    segments = output["segments"]
    labelled = [
        (s["start_time_sec"], s["end_time_sec"], s["speaker"])
        for s in segments
        if s.get("speaker") is not None
    ]
    notes = [f"{len(output['macro_chunks'])} macro chunks"]
    if not job.get("diarize"):
        return [Run(system, [], wall, ", ".join(notes), cpu)]
    if len(labelled) < len(segments):
        notes.append(f"{len(segments) - len(labelled)} segments without a speaker")
    turns = [(t["start_sec"], t["end_sec"], t["speaker"]) for t in output["speaker_turns"]]
    return [
        Run(system, turns, wall, ", ".join(notes), cpu),
        Run(f"{system} segments", labelled, wall, "the transcript's segments as turns"),
    ]


def run_reference(media: Media, models: SpeakerModels, known: bool) -> list[Run]:
    """The same models over the whole file in one process; with `known`, the same local
    speakers clustered again with the known speakers' embeddings."""
    from shared.diarization.clustering import KnownSpeaker, SpeakerConstraints, cluster_speakers
    from shared.diarization.local import local_speakers

    pcm = decode_audio(str(media.mp3), sampling_rate=16000)
    started = time.perf_counter()
    local = local_speakers(models, pcm, 0.0)
    local_sec = time.perf_counter() - started
    constraints = SpeakerConstraints(num_speakers=None, min_speakers=None, max_speakers=None)
    timeline = cluster_speakers(local, constraints)
    runs = [Run("reference", list(timeline.turns), time.perf_counter() - started)]
    if known and media.references:
        started = time.perf_counter()
        clips = [_data_url_pcm(url) for url in media.references.values()]
        speakers = [
            KnownSpeaker(name=name, embedding=embedding)
            for name, embedding in zip(media.references, models.embed(clips), strict=True)
        ]
        named = cluster_speakers(local, constraints, known=speakers)
        wall = local_sec + time.perf_counter() - started
        runs.append(Run("reference+known", list(named.turns), wall, "local speakers reused"))
    return runs


def _data_url_pcm(url: str) -> np.ndarray:
    with wave.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as reader:
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return samples.astype(np.float32) / 32768.0


class PeerFailedError(Exception):
    """The peer could not diarize a file; the message says how it ended."""


def run_senko(python: str, media: Media) -> Run:
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-c", SENKO_SCRIPT, str(media.wav)], capture_output=True, text=True, check=False
    )
    total = time.perf_counter() - started
    if done.returncode != 0:
        raise PeerFailedError(_how_it_ended(done.returncode, done.stderr))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    turns = [(float(s), float(e), str(label)) for s, e, label in result["segments"]]
    note = f"{result['load_sec']:.1f} s to load; {total:.1f} s with the process"
    return Run("senko 0.2.2", turns, result["wall_sec"], note)


@dataclass
class Row:
    run: Run
    score: DiarizationError
    names: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Known speaker -> (share of their scored speech labelled with their name, share of what
    is labelled with their name that is their speech)."""


def _how_it_ended(returncode: int, stderr: str) -> str:
    if returncode < 0:  # senko 0.2.2's fbank library uses AVX-512: SIGILL on AVX2-only CPUs
        name = signal.Signals(-returncode).name
        why = " (an instruction this CPU lacks)" if name == "SIGILL" else ""
        return f"killed by {name}{why}"
    lines = stderr.strip().splitlines()
    return f"exit status {returncode}: {lines[-1] if lines else 'no message'}"


def score_runs(media: Media, runs: list[Run]) -> list[Row]:
    rows = []
    for run in runs:
        row = Row(run, diarization_error(media.reference, run.turns))
        if "known" in run.system:
            row.names = {
                name: (
                    labelled_share(media.reference, run.turns, name, name),
                    named_precision(media.reference, run.turns, name, name),
                )
                for name in media.references
            }
        rows.append(row)
    return rows


def report(
    media: Media, rows: list[Row], plain: Run | None, peer_failed: str | None = None
) -> list[str]:
    """Print one file's table; return its PASS/FAIL lines (`peer_failed`: how senko ended on
    this file, when it could not diarize it)."""
    manifest = media.manifest
    duration = manifest["duration_sec"]
    speakers = len(manifest["speakers"])
    kinds = [t["kind"] for t in manifest["turns"]]
    scored = f"scored {rows[0].score.scored_sec:.0f} s of speech"
    if media.real:
        print(f"\n{media.file.name}: {media.real.description}, {speakers} speakers; {scored}")
    else:
        print(
            f"\n{media.file.name}: {duration / 60:.1f} min, {speakers} voices, "
            f"{kinds.count('turn')} turns, {kinds.count('backchannel')} backchannels; "
            f"{scored} (made in {media.make_sec:.1f} s)"
        )
    print(
        f"{'system':<18} {'DER':>7} {'missed':>7} {'false al.':>9} {'confusion':>9} "
        f"{'speakers':>9} {'wall':>8} {'x real':>7}  notes"
    )
    for row in rows:
        run, s = row.run, row.score
        names = ", ".join(
            f"{n} named on {recall:.1%} ({precision:.1%} of '{n}' is {n})"
            for n, (recall, precision) in row.names.items()
        )
        print(
            f"{run.system:<18} {s.der:>7.2%} {s.missed:>7.2%} {s.false_alarm:>9.2%} "
            f"{s.confusion:>9.2%} {s.hypothesis_speakers:>4}/{s.reference_speakers:<4} "
            f"{run.wall_sec:>7.1f}s {duration / run.wall_sec:>7.1f}  "
            + "; ".join(x for x in (names, run.note) if x)
        )
    if plain:
        print(
            f"{plain.system:<18} {'':>45} {plain.wall_sec:>7.1f}s "
            f"{duration / plain.wall_sec:>7.1f}  {plain.note}"
        )
    product_run = next((row.run for row in rows if row.run.system == "product"), None)
    if plain and product_run and plain.cpu_sec and product_run.cpu_sec:
        print(cpu_line(plain.cpu_sec, product_run.cpu_sec, duration))
    by_system = {row.run.system: row for row in rows}
    verdicts: list[tuple[str, bool | None]] = []
    product = by_system.get("product")
    if product:
        der = product.score.der
        senko = by_system.get("senko 0.2.2")
        verdicts.append(
            (f"DER product {der:.2%} <= senko {senko.score.der:.2%}", der <= senko.score.der)
            if senko
            else (f"DER product <= senko: senko {peer_failed or 'not run'}", None)
        )
        if reference := by_system.get("reference"):
            points = 100 * (der - reference.score.der)
            verdicts.append(
                (
                    f"DER product - whole-file reference {points:+.2f} points <= "
                    f"{SCALE_OUT_POINTS:g}",
                    points <= SCALE_OUT_POINTS,
                )
            )
        found = product.score.hypothesis_speakers
        if speakers <= MAX_COUNTED_SPEAKERS:  # not the 27 of the AMI excerpts: DER says it
            verdicts.append((f"speakers found {found} == {speakers}", found == speakers))
        if plain:
            ratio = product.run.wall_sec / plain.wall_sec
            verdicts.append(
                (
                    f"wall with diarization {ratio:.3f}x without <= {WALL_RATIO:g}x",
                    ratio <= WALL_RATIO,
                )
            )
    if known := by_system.get("product+known"):
        for name, (recall, precision) in known.names.items():
            verdicts.append(
                (
                    f"{name} named on {recall:.1%} of their speech >= {NAMED_SHARE:.0%}",
                    recall >= NAMED_SHARE,
                )
            )
            verdicts.append(
                (
                    f"speech named {name} is theirs on {precision:.1%} >= {NAMED_SHARE:.0%}",
                    precision >= NAMED_SHARE,
                )
            )
    verdict = {True: "PASS", False: "FAIL", None: "SKIP"}
    return [f"{verdict[ok]}  {media.file.name}: {text}" for text, ok in verdicts]


def cpu_line(plain: dict[str, float], diarized: dict[str, float], duration_sec: float) -> str:
    """Where the CPU went, without and with diarization: the chunk workers' difference is
    diarization's cost; the model server's moves by a few percent between identical jobs."""

    def parts(used: dict[str, float]) -> tuple[float, float, float]:
        workers = sum(v for name, v in used.items() if name.startswith("chunk_worker"))
        return sum(used.values()), used.get("whisper_gpu", 0.0), workers

    (total0, model0, workers0), (total1, model1, workers1) = parts(plain), parts(diarized)
    per_10_min = (workers1 - workers0) * 600 / duration_sec
    return (
        f"CPU, without / with diarize: whole job {total0:.1f} / {total1:.1f} s "
        f"({total1 / total0:.3f}x), model server {model0:.1f} / {model1:.1f} s, chunk workers "
        f"{workers0:.1f} / {workers1:.1f} s (diarization {per_10_min:.1f} s per 10 min of audio)"
    )


def ensure_weights(models_dir: Path) -> None:
    """Convert the diarization models into `models_dir` if they are not there yet (the stack's
    workers and the reference read them from there). Imported here, not at the top:
    `--systems senko` needs none of the models."""
    from shared.diarization.weights import ensure

    ensure(models_dir)


def load_models(models_dir: Path, threads: int) -> SpeakerModels:
    from shared.diarization.models import load_speaker_models
    from shared.diarization.weights import locate

    return load_speaker_models(locate(models_dir), threads=threads)


def product_runs(
    media: list[Media], model: str, workers: int, models_dir: Path, repeats: int
) -> tuple[dict[str, list[Run]], dict[str, Run]]:
    """Each file with and without diarization (and with known speakers where it has some) on
    one stack; returns the diarized runs and the plain ones, by file (of `repeats` runs each,
    the fastest; the DERs of repeated runs are the same)."""
    runs: dict[str, list[Run]] = {m.file.name: [] for m in media}
    plain: dict[str, Run] = {}
    stack = LocalStack(
        port=free_port(),
        workers=workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(workers)],
        env={
            "WHISPER_MODEL": model,
            "WHISPER_MODEL_CACHE_DIR": str((RESULTS / "models").resolve()),
            "CHUNK_WORKER_MODELS_DIR": str(models_dir),
            "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,  # the local media host
            "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,
        },
        log_dir=Path(tempfile.mkdtemp(prefix="bench-diarization-")),
    )
    with stack, MediaServer(media[0].mp3.parent) as server:
        for m in media:
            url = server.url(m.mp3.name)
            # Without and with diarization in turn, `repeats` times; the faster run of each
            # counts (this machine's speed drifts by up to a fifth over minutes).
            for _ in range(repeats):
                [bare] = run_product(stack, url, "product, no diarize", params(False))
                if m.file.name not in plain or bare.wall_sec < plain[m.file.name].wall_sec:
                    plain[m.file.name] = bare
                diarized = run_product(stack, url, "product", params(True))
                kept = runs[m.file.name]
                if not kept or diarized[0].wall_sec < kept[0].wall_sec:
                    runs[m.file.name] = diarized
                if kept and kept[0].turns != diarized[0].turns:
                    for run in runs[m.file.name]:
                        run.note += ", speaker turns differ between repeats"
            if m.references:
                known = params(True, m.references)
                runs[m.file.name] += run_product(stack, url, "product+known", known)[:1]
            print(
                f"{m.mp3.name}: product {runs[m.file.name][0].wall_sec:.1f} s, without "
                f"diarization {plain[m.file.name].wall_sec:.1f} s",
                flush=True,
            )
    return runs, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="base", choices=("base", "tiny.en"))
    parser.add_argument("--quick", action="store_true", help="leave out the 2 h meeting")
    parser.add_argument("--meeting-minutes", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="product jobs with and without diarization, in turn, per file (the fastest counts)",
    )
    parser.add_argument(
        "--systems",
        default="product,reference,senko",
        help="which to run (comma-separated): product, reference, senko",
    )
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument(
        "--no-real", action="store_true", help="leave out the real recordings (a download)"
    )
    args = parser.parse_args()
    systems = set(args.systems.split(","))
    if unknown := systems - {"product", "reference", "senko"}:
        raise SystemExit(f"unknown systems {sorted(unknown)}: use product, reference, senko")
    if shutil.which("espeak-ng") is None:
        raise SystemExit(
            "bench-diarization makes its conversations with espeak-ng: apt-get install espeak-ng"
        )
    senko_python = os.environ.get("BENCH_SENKO_PYTHON", "")
    RESULTS.mkdir(exist_ok=True)
    cpus = available_cpus()
    with tempfile.TemporaryDirectory(prefix="bench-diarization-") as tmp:
        folder = Path(tmp)
        (folder / "work").mkdir()
        media = []
        if not args.no_real:
            media += [real_media(r) for r in recordings(REAL_CACHE, folder)]
        for file in bench_files(args.quick, args.meeting_minutes):
            media.append(make_media(file, folder, folder / "work"))
            duration = media[-1].manifest["duration_sec"]
            print(f"{file.name}: {duration:.0f} s made in {media[-1].make_sec:.1f} s", flush=True)
        if systems & {"product", "reference"}:
            ensure_weights(args.models_dir)
        runs: dict[str, list[Run]] = {m.file.name: [] for m in media}
        plain: dict[str, Run] = {}
        peer_failed: dict[str, str] = {}
        if "product" in systems:
            runs, plain = product_runs(
                media, args.model, args.workers, args.models_dir, args.repeats
            )
        if "reference" in systems:
            models = load_models(args.models_dir, cpus)
            for m in media:
                reference = run_reference(m, models, known=True)
                runs[m.file.name] += reference
                print(f"{m.mp3.name}: reference {reference[0].wall_sec:.1f} s", flush=True)
        if "senko" in systems and senko_python:
            for m in media:
                try:
                    runs[m.file.name].append(run_senko(senko_python, m))
                except PeerFailedError as failed:  # the other systems' results still count
                    peer_failed[m.file.name] = f"failed: {failed}"
                    print(f"{m.mp3.name}: senko failed: {failed}", flush=True)
                    continue
                print(f"{m.mp3.name}: senko {runs[m.file.name][-1].wall_sec:.1f} s", flush=True)
    verdicts: list[str] = []
    results: dict[str, Any] = {"model": args.model, "cpus": cpus, "files": {}}
    for m in media:
        rows = score_runs(m, runs[m.file.name])
        if not rows:  # only senko was asked for, and it failed
            print(f"\n{m.file.name}: no system diarized it")
            continue
        verdicts += report(m, rows, plain.get(m.file.name), peer_failed.get(m.file.name))
        results["files"][m.file.name] = _results(m, rows, plain.get(m.file.name))
        if m.file.name in peer_failed:
            results["files"][m.file.name]["senko 0.2.2"] = peer_failed[m.file.name]
    if "senko" in systems and not senko_python:
        print("\nsenko not run: set BENCH_SENKO_PYTHON to a python with senko==0.2.2 installed")
    print(
        f"\nmodel {args.model} (int8), {cpus} CPUs, macro chunks of {MACRO_CHUNK_SEC:g} s; "
        "reference: shared.diarization's local_speakers + cluster_speakers over the whole file "
        f"in one process; results: {RESULTS / 'diarization.json'}\n"
    )
    print("\n".join(verdicts))
    results["verdicts"] = verdicts
    (RESULTS / "diarization.json").write_text(json.dumps(results, indent=1) + "\n")


def _results(media: Media, rows: list[Row], plain: Run | None) -> dict[str, Any]:
    return {
        "duration_sec": media.manifest["duration_sec"],
        "speakers": len(media.manifest["speakers"]),
        "make_sec": round(media.make_sec, 2),
        "systems": {
            row.run.system: {
                "der": row.score.der,
                "missed": row.score.missed,
                "false_alarm": row.score.false_alarm,
                "confusion": row.score.confusion,
                "scored_sec": row.score.scored_sec,
                "speakers_found": row.score.hypothesis_speakers,
                "wall_sec": round(row.run.wall_sec, 2),
                "cpu_sec": row.run.cpu_sec,
                "names": row.names,
                "note": row.run.note,
            }
            for row in rows
        }
        | (
            {
                "product, no diarize": {
                    "wall_sec": round(plain.wall_sec, 2),
                    "cpu_sec": plain.cpu_sec,
                }
            }
            if plain
            else {}
        ),
    }


if __name__ == "__main__":
    main()
