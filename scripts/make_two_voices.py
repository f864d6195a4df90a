"""Make tests/media/two_voices_20s.wav: two espeak-ng voices taking turns, and its manifest.

    python -m scripts.make_two_voices [--out tests/media]

Needs Debian's `espeak-ng` (only to regenerate: the WAV and its JSON are committed, so the
diarization integration test needs nothing but Python). Voices `en-us+f2` and `en+m3` (CAM++
cosine ~0.45 apart, ~0.9 within one voice), five turns of one or two sentences with 0.5-0.8 s
pauses, at 16 kHz 16-bit mono (the stack's own rate: no resampling at test time) over a faint
noise floor. The manifest lists every turn: start, end, speaker, text.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

RATE = 16000
VOICES = {"A": "en-us+f2", "B": "en+m3"}
TURNS = [
    ("A", ["Every worker fetches only its own part of the file."]),
    ("B", ["The weather today is mild with a light breeze from the west."]),
    ("A", ["Short one.", "The quick brown fox jumps over the lazy dog."]),
    ("B", ["Silence between sentences is where the cuts should land."]),
    ("A", ["A model server batches clips from many requests together."]),
]
PAUSES_SEC = [0.6, 0.8, 0.5, 0.7]
"""Between the turns."""
SENTENCE_GAP_SEC = 0.25
"""Between two sentences of one turn."""


def speak(text: str, voice: str, workdir: Path) -> np.ndarray:
    """One sentence at 16 kHz, trimmed to its first and last audible sample."""
    path = workdir / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    audio = resample_poly(samples.astype(np.float32) / 32768.0, RATE, rate).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    trimmed: np.ndarray = audio[loud[0] : loud[-1] + 1]
    return trimmed


def make(workdir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(16)
    pieces = [np.zeros(RATE // 2, dtype=np.float32)]
    cursor = len(pieces[0])
    turns = []
    for index, (speaker, sentences) in enumerate(TURNS):
        start = cursor
        for i, text in enumerate(sentences):
            if i:
                gap = np.zeros(int(SENTENCE_GAP_SEC * RATE), dtype=np.float32)
                pieces.append(gap)
                cursor += len(gap)
            audio = speak(text, VOICES[speaker], workdir)
            audio *= 0.1 / max(float(np.sqrt(np.mean(audio**2))), 1e-6)  # same loudness
            pieces.append(audio)
            cursor += len(audio)
        turns.append(
            {
                "start_sec": round(start / RATE, 4),
                "end_sec": round(cursor / RATE, 4),
                "speaker": speaker,
                "text": " ".join(sentences),
            }
        )
        pause = PAUSES_SEC[index] if index < len(PAUSES_SEC) else 0.5
        pieces.append(np.zeros(int(pause * RATE), dtype=np.float32))
        cursor += len(pieces[-1])
    audio = np.concatenate(pieces)
    audio += rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (-54 / 20)
    manifest = {
        "duration_sec": round(len(audio) / RATE, 4),
        "generator": "scripts/make_two_voices.py (espeak-ng)",
        "voices": VOICES,
        "turns": turns,
    }
    return np.clip(audio, -1, 1), manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("tests/media"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio, manifest = make(Path(tmp))
    path = args.out / "two_voices_20s.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes((audio * 32767).astype("<i2").tobytes())
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{path}: {manifest['duration_sec']} s, {len(manifest['turns'])} turns")


if __name__ == "__main__":
    main()
