"""Generate the committed test media: espeak-ng speech with seeded pauses, plus a manifest.

    python -m scripts.make_test_media [--out tests/media] [--only words]

Needs Debian's `espeak-ng` (only to regenerate; the outputs are committed so `make test` needs
nothing but Python). FFmpeg comes from imageio-ffmpeg. Every file gets a JSON manifest with each
sentence's start and end, so tests can check that cuts land in pauses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from scripts import speech
from scripts.speech import Block

RATE = 22050  # espeak-ng's native rate
NOISE_DBFS = -54.0

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Whisperfleet cuts long recordings into chunks at quiet points.",
    "Every worker fetches only its own time range from the server.",
    "A model server batches clips from many requests together.",
    "Silence between sentences is where the cuts should land.",
    "The orchestrator merges every segment back in order.",
    "Range requests keep the download close to the minimum.",
    "This sentence is a little longer than the others, to vary the rhythm of the speech.",
    "Short one.",
    "Timestamps must stay exact across both levels of chunking.",
    "Nobody likes a transcript that splits a word in half.",
    "Streaming shows the first words within seconds.",
    "Ten hours of audio should not need ten hours of memory.",
    "Each replica takes its fair share of the work.",
    "A clear error beats a silent hang every time.",
    "The weather today is mild with a light breeze from the west.",
    "Numbers like three hundred and thirty are spoken out loud.",
    "Please keep your hands inside the vehicle at all times.",
    "The library opens at nine and closes at six.",
    "Good tests check structure and timing, never the words.",
]


def speak(text: str, workdir: Path, index: int) -> np.ndarray:
    path = workdir / f"s{index}.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "165", "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as reader:
        assert reader.getframerate() == RATE, reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    audio = samples.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def synthesise(
    total_sec: float, seed: int, workdir: Path
) -> tuple[np.ndarray, list[dict[str, object]]]:
    """Sentences separated by seeded pauses of 0.4-1.6 s over a faint noise floor."""
    rng = np.random.default_rng(seed)
    voices = [speak(text, workdir, i) for i, text in enumerate(SENTENCES)]
    pieces: list[np.ndarray] = []
    manifest: list[dict[str, object]] = []
    cursor = 0
    pieces.append(np.zeros(int(0.5 * RATE), dtype=np.float32))
    cursor += len(pieces[-1])
    order = 0
    while cursor / RATE < total_sec:
        index = int(rng.integers(len(SENTENCES)))
        voice = voices[index]
        manifest.append(
            {
                "start_sec": round(cursor / RATE, 4),
                "end_sec": round((cursor + len(voice)) / RATE, 4),
                "text": SENTENCES[index],
            }
        )
        pieces.append(voice)
        cursor += len(voice)
        pause = np.zeros(int(rng.uniform(0.4, 1.6) * RATE), dtype=np.float32)
        pieces.append(pause)
        cursor += len(pause)
        order += 1
    audio = np.concatenate(pieces)
    audio += rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (NOISE_DBFS / 20)
    return np.clip(audio, -1, 1), manifest


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((audio * 32767).astype("<i2").tobytes())


def ffmpeg(*args: str) -> None:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args]
    subprocess.run(command, check=True)


# name -> (extra input args, output args); the input is the master WAV.
FORMATS: dict[str, tuple[list[str], list[str]]] = {
    "wav": ([], ["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le"]),
    "cbr.mp3": ([], ["-ar", "22050", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "48k"]),
    "vbr.mp3": ([], ["-ar", "22050", "-ac", "1", "-c:a", "libmp3lame", "-q:a", "6"]),
    "opus": ([], ["-ac", "1", "-c:a", "libopus", "-b:a", "24k", "-f", "ogg"]),
    "faststart.m4a": ([], ["-ac", "1", "-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart"]),
    "moovend.m4a": ([], ["-ac", "1", "-c:a", "aac", "-b:a", "48k"]),
    "flac": ([], ["-ar", "16000", "-ac", "1", "-c:a", "flac"]),
    "webm": ([], ["-ac", "1", "-c:a", "libopus", "-b:a", "24k", "-f", "webm"]),
    "mp4": (
        ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"],
        ["-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "40",
         "-c:a", "aac", "-b:a", "48k", "-shortest", "-movflags", "+faststart"],
    ),
    "mkv": (
        ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"],
        ["-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "40",
         "-c:a", "libopus", "-b:a", "24k", "-shortest"],
    ),
    # Stereo at 44.1 kHz with speech on the left channel only: a downmix must still hear it.
    "left-only.stereo.mp3": (
        [],
        ["-af", "pan=stereo|c0=c0|c1=0*c0", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "96k"],
    ),
    "6ch.m4a": (
        [],
        ["-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-ar", "48000", "-c:a", "aac",
         "-b:a", "128k"],
    ),
}  # fmt: skip


# Media for the real-model tests (scripts/speech.py): plain sentences (scripts/corpus.py), so the
# words can be checked, in two English voices, four languages, and after minutes without speech.
WORDS_MEDIA: dict[str, tuple[int, list[Block]]] = {
    # Two English voices, 90 s each: words, lost sentences, timestamps (tiny.en).
    "words_en_180s": (21, [Block("speech", 90, voice="en-gb"), Block("speech", 90, voice="en-us")]),
    # English, German, French, Spanish blocks of ~45 s: language per chunk (base).
    "codeswitch_180s": (
        22,
        [Block("speech", 45, voice=v) for v in ("en-us", "de", "fr", "es")],
    ),
    # Two sentences in espeak's Scottish English, alone: decoded at their own length, the
    # language detection heard Welsh (confidently in the first, 0.74; unsure in the second);
    # on Whisper's 30 s encoding it hears English, as faster-whisper does.
    "scottish_7s": (41, [Block("speech", 6, voice="en-scotland")]),
    "scottish_9s": (44, [Block("speech", 6, voice="en-scotland")]),
    # Three minutes of faint noise, 20 s of a stepped tone, then speech: no invented words, and
    # the first segment starts at the speech.
    "noise_then_speech_220s": (
        23,
        [
            Block("noise", 180, level_dbfs=-45),
            Block("tone", 20, level_dbfs=-24),
            Block("speech", 20, voice="en-us"),
        ],
    ),
}


def make_words_media(out: Path, workdir: Path) -> None:
    for name, (seed, blocks) in WORDS_MEDIA.items():
        audio, manifest = speech.synthesise(blocks, seed=seed, workdir=workdir)
        speech.write_mp3(out / f"{name}.mp3", audio, workdir, bitrate="24k")
        speech.write_manifest(out / f"{name}.json", manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("tests/media"))
    parser.add_argument(
        "--only",
        choices=("all", "structure", "words"),
        default="all",
        help="structure: the original media (cuts, formats); words: the real-model media",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.only in ("all", "words"):
            make_words_media(args.out, workdir)
        if args.only == "words":
            return
        # A few minutes of speech for the end-to-end tests (CBR MP3: small and range-seekable).
        long_audio, long_manifest = synthesise(200.0, seed=7, workdir=workdir)
        master = workdir / "long.wav"
        write_wav(master, long_audio)
        ffmpeg("-i", str(master), "-ar", "22050", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "32k",
               str(args.out / "speech_200s.mp3"))  # fmt: skip
        write_manifest(args.out / "speech_200s.json", long_audio, long_manifest)

        # 40 s in every format for the format and offset tests.
        short_audio, short_manifest = synthesise(40.0, seed=11, workdir=workdir)
        master = workdir / "short.wav"
        write_wav(master, short_audio)
        for name, (inputs, outputs) in FORMATS.items():
            ffmpeg("-i", str(master), *inputs, *outputs, str(args.out / f"speech_40s.{name}"))
        write_manifest(args.out / "speech_40s.json", short_audio, short_manifest)


def write_manifest(path: Path, audio: np.ndarray, sentences: list[dict[str, object]]) -> None:
    manifest = {
        "duration_sec": round(len(audio) / RATE, 4),
        "noise_dbfs": NOISE_DBFS,
        "generator": "scripts/make_test_media.py (espeak-ng -v en -s 165)",
        "sentences": sentences,
    }
    path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
