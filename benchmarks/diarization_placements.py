"""Who spoke when over many placements of the macro chunks, offline: the scale-out against the
whole-file run, without the stack.

The stack's DER on a file hangs on where its macro and micro chunks fall, which one bench run
shows once. This runs the product's own pieces in one process: macro chunk boundaries at the
quietest point of each search window (planning + the worker's silence search), micro chunks
cut by `MicroChunker`, the VAD, `local_speakers` and `within_speech` per micro chunk, then one
`cluster_speakers` (the scale-out); and `local_speakers` over the whole file (the reference).
Each placement puts a little silence before the file, which moves every cut. No Whisper.

    python -m benchmarks.diarization_placements [--files ami-7min,call-30s,2v-10min]
        [--shifts 0,0.5,1.5,2.5,3.5,5,7.5] [--macro-chunk-sec 120]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the services run it (bit-exact features)

import numpy as np
from faster_whisper.audio import decode_audio

from benchmarks.real_recordings import recordings
from scripts.make_conversations import Conversation, make_conversation, reference_turns
from services.chunk_worker.pipeline import MicroChunker
from services.chunk_worker.silence import quietest_point
from services.orchestrator.transcription.planning import chunk_count, search_window
from shared.diarization.clustering import SpeakerConstraints, cluster_speakers
from shared.diarization.local import local_speakers, within_speech
from shared.diarization.models import SpeakerModels, load_speaker_models
from shared.diarization.weights import ensure, locate
from shared.schemas import SAMPLE_RATE_HZ, LocalSpeaker, TranscribeParams
from shared.vad import speech_spans
from tests.support.der import Turn, diarization_error

GENERATED = {
    "2v-10min": Conversation(("Ann", "Ben"), 600, seed=102),
    "4v-10min": Conversation(("Ann", "Ben", "Cat", "Dan"), 600, seed=104),
    "3v-10min": Conversation(("Gus", "Dan", "Cat"), 600, seed=202),
    "2v-5min": Conversation(("Ben", "Cat"), 300, seed=204),
}
"""The bench's two generated files (same seeds) and two it never saw."""
CACHE = Path(os.environ.get("WHISPERFLEET_CACHE", Path.home() / ".cache" / "whisperfleet"))
BOUNDARY_SEARCH_SEC = 5.0
FIRST_MICRO_CHUNK_SEC = 10.0


def load(name: str, folder: Path) -> tuple[np.ndarray, list[Turn]]:
    """16 kHz mono float32 and its reference turns."""
    if name in GENERATED:
        mp3 = folder / f"{name}.mp3"
        manifest = make_conversation(GENERATED[name], mp3, folder)
        return decode_audio(str(mp3), sampling_rate=SAMPLE_RATE_HZ), reference_turns(manifest)
    found = {r.name: r for r in recordings(CACHE / "bench", folder)}
    if name not in found:
        raise SystemExit(f"unknown file {name!r}: {', '.join([*found, *GENERATED])}")
    recording = found[name]
    return decode_audio(str(recording.wav), sampling_rate=SAMPLE_RATE_HZ), recording.reference


def macro_chunks(pcm16: np.ndarray, macro_chunk_sec: float) -> list[tuple[int, int]]:
    """[start, end) samples of each macro chunk, boundaries where the stack puts them."""
    duration = len(pcm16) / SAMPLE_RATE_HZ
    count = chunk_count(duration, macro_chunk_sec)
    smoothing = TranscribeParams().silence_detection_smoothing_num_samples
    cuts = [0]
    for index in range(count - 1):
        lo, hi = search_window(index, count, duration, BOUNDARY_SEARCH_SEC)
        first, last = round(lo * SAMPLE_RATE_HZ), round(hi * SAMPLE_RATE_HZ)
        cuts.append(first + quietest_point(pcm16[first:last], 0, last - first, smoothing))
    cuts.append(len(pcm16))
    return list(itertools.pairwise(cuts))


def scale_out(models: SpeakerModels, pcm: np.ndarray, macro_chunk_sec: float) -> list[LocalSpeaker]:
    """Every micro chunk's local speakers, as the chunk workers send them."""
    params = TranscribeParams()
    pcm16 = np.clip(np.round(pcm * 32768.0), -32768, 32767).astype(np.int16)  # FFmpeg s16
    voices: list[LocalSpeaker] = []
    for index, (start, end) in enumerate(macro_chunks(pcm16, macro_chunk_sec)):
        first = round(FIRST_MICRO_CHUNK_SEC * SAMPLE_RATE_HZ) if index == 0 else None
        chunker = MicroChunker(
            round(params.micro_chunk_size_sec * SAMPLE_RATE_HZ),
            params.silence_detection_smoothing_num_samples,
            first,
        )
        for chunk in [*chunker.feed(pcm16[start:end]), *chunker.finish()]:
            samples = chunk.samples / 32768.0
            speech = speech_spans(samples)
            if not speech:
                continue
            offset = (start + chunk.offset_samples) / SAMPLE_RATE_HZ
            heard = (offset + speech[0][0], offset + speech[-1][1])
            voices += within_speech(local_speakers(models, samples, offset), *heard)
    return voices


def score(reference: list[Turn], voices: list[LocalSpeaker]) -> tuple[float, int]:
    timeline = cluster_speakers(voices, SpeakerConstraints())
    return diarization_error(reference, timeline.turns).der * 100, len(timeline.speakers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="ami-7min,call-30s,2v-10min,4v-10min")
    parser.add_argument("--shifts", default="0,0.5,1.5,2.5,3.5,5,7.5")
    parser.add_argument("--macro-chunk-sec", type=float, default=120.0)
    args = parser.parse_args()
    models_dir = CACHE / "models"
    ensure(models_dir)
    models = load_speaker_models(locate(models_dir), threads=1)
    shifts = [float(shift) for shift in args.shifts.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        for name in args.files.split(","):
            pcm, reference = load(name, Path(folder))
            runs: dict[str, list[tuple[float, int]]] = {"scale-out": [], "whole file": []}
            systems: dict[str, Callable[[np.ndarray], list[LocalSpeaker]]] = {
                "scale-out": lambda audio: scale_out(models, audio, args.macro_chunk_sec),
                "whole file": lambda audio: local_speakers(models, audio, 0.0),
            }
            for shift in shifts:
                audio = np.concatenate([np.zeros(round(shift * SAMPLE_RATE_HZ), np.float32), pcm])
                moved = [(a + shift, b + shift, who) for a, b, who in reference]
                line = []
                for system, voices_of in systems.items():
                    der, speakers = score(moved, voices_of(audio))
                    runs[system].append((der, speakers))
                    line.append(f"{system} {der:6.2f}% ({speakers} speakers)")
                print(f"{name} +{shift:g} s: " + ", ".join(line), flush=True)
            for system, results in runs.items():
                ders = [der for der, _ in results]
                counts = sorted({speakers for _, speakers in results})
                print(
                    f"{name} {system}: DER {min(ders):.2f}-{max(ders):.2f}% "
                    f"(mean {statistics.mean(ders):.2f}), speakers {counts}"
                )


if __name__ == "__main__":
    main()
