"""Synthetic speech with known sentence times: espeak-ng voices, seeded pauses, noise and tones.

    blocks = [Block("noise", 180), Block("speech", 60, voice="en-us")]
    audio, manifest = synthesise(blocks, seed=3, workdir=Path(tmp))

Needs Debian's `espeak-ng` (to generate only: the committed media and their manifests are what
the tests read). Audio is 22,050 Hz mono float32 (espeak-ng's native rate) over a faint noise
floor; the manifest lists every sentence (start, end, text, language, voice) and every stretch
without speech (noise, tone, silence), so tests can check words, times, languages and cuts.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import imageio_ffmpeg
import numpy as np

from scripts.corpus import SENTENCES

RATE = 22050
NOISE_DBFS = -54.0

VOICES: dict[str, str] = {
    "en-gb": "en",
    "en-us": "en-us",
    "en-scotland": "en-gb-scotland",
    "en-caribbean": "en-029",
    "de": "de",
    "fr": "fr",
    "es": "es",
}
"""Our voice names -> espeak-ng voices."""


@dataclass(frozen=True)
class Block:
    """A stretch of the timeline: speech in one voice, or something that is not speech."""

    kind: Literal["speech", "noise", "tone", "silence"]
    seconds: float
    voice: str = "en-gb"
    speed_wpm: int = 165
    level_dbfs: float = -30.0
    """Loudness of a noise or tone block."""

    @property
    def language(self) -> str:
        return self.voice.split("-")[0]


def synthesise(blocks: list[Block], seed: int, workdir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The audio and its manifest: speech blocks hold whole sentences separated by 0.4-1.6 s
    pauses (a block ends after the sentence that crosses its length)."""
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = [np.zeros(int(0.5 * RATE), dtype=np.float32)]
    cursor = len(pieces[0])
    sentences: list[dict[str, Any]] = []
    non_speech: list[dict[str, Any]] = []
    decks: dict[str, list[str]] = {}
    for block in blocks:
        block_start = cursor
        if block.kind != "speech":
            piece = _non_speech(block, rng)
            non_speech.append(_span(cursor, len(piece)) | {"kind": block.kind})
            pieces.append(piece)
            cursor += len(piece)
            continue
        while (cursor - block_start) / RATE < block.seconds:
            text = _draw(decks, block.language, rng)
            voice = speak(text, block.voice, block.speed_wpm, workdir)
            sentences.append(
                _span(cursor, len(voice))
                | {"text": text, "language": block.language, "voice": block.voice}
            )
            pause = np.zeros(int(rng.uniform(0.4, 1.6) * RATE), dtype=np.float32)
            pieces += [voice, pause]
            cursor += len(voice) + len(pause)
    audio = np.concatenate(pieces)
    audio += rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (NOISE_DBFS / 20)
    manifest = {
        "duration_sec": round(len(audio) / RATE, 4),
        "noise_dbfs": NOISE_DBFS,
        "generator": "scripts/speech.py (espeak-ng)",
        "seed": seed,
        "sentences": sentences,
        "non_speech": non_speech,
    }
    return np.clip(audio, -1, 1), manifest


def _draw(decks: dict[str, list[str]], language: str, rng: np.random.Generator) -> str:
    """Sentences in a shuffled cycle: each is used once before any repeats."""
    deck = decks.setdefault(language, [])
    if not deck:
        deck.extend(rng.permutation(SENTENCES[language]).tolist())
    return deck.pop()


def _span(start: int, length: int) -> dict[str, Any]:
    return {"start_sec": round(start / RATE, 4), "end_sec": round((start + length) / RATE, 4)}


def _non_speech(block: Block, rng: np.random.Generator) -> np.ndarray:
    count = int(block.seconds * RATE)
    amplitude = 10 ** (block.level_dbfs / 20)
    if block.kind == "silence":
        return np.zeros(count, dtype=np.float32)
    if block.kind == "noise":
        return (rng.standard_normal(count) * amplitude).astype(np.float32)
    # A tone that steps between a few pitches, like a test signal or a phone line.
    t = np.arange(count) / RATE
    pitch = np.array([440.0, 660.0, 880.0, 1000.0])[(t // 2.0).astype(int) % 4]
    tone: np.ndarray = np.sin(2 * np.pi * pitch * t) * amplitude * np.sqrt(2)
    return tone.astype(np.float32)


def speak(text: str, voice: str, speed_wpm: int, workdir: Path) -> np.ndarray:
    """One sentence from espeak-ng, trimmed to its first and last audible sample."""
    return espeak(text, VOICES[voice], speed_wpm, workdir)


def espeak(text: str, espeak_voice: str, speed_wpm: int, workdir: Path) -> np.ndarray:
    """`speak` with any espeak-ng voice name (`en+m3`: a language and a variant)."""
    key = hashlib.sha1(f"{espeak_voice}|{speed_wpm}|{text}".encode()).hexdigest()[:16]
    path = workdir / f"{key}.wav"
    if not path.exists():
        command = ["espeak-ng", "-v", espeak_voice, "-s", str(speed_wpm), "-w", str(path), text]
        subprocess.run(command, check=True)
    with wave.open(str(path), "rb") as reader:
        assert reader.getframerate() == RATE, reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    audio = samples.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    trimmed: np.ndarray = audio[loud[0] : loud[-1] + 1]
    return trimmed


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((audio * 32767).astype("<i2").tobytes())


def write_mp3(path: Path, audio: np.ndarray, workdir: Path, bitrate: str = "32k") -> None:
    master = workdir / f"{path.stem}.master.wav"
    write_wav(master, audio)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i",
               str(master), "-ar", str(RATE), "-ac", "1", "-c:a", "libmp3lame", "-b:a", bitrate,
               str(path)]  # fmt: skip
    subprocess.run(command, check=True)
    master.unlink()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
