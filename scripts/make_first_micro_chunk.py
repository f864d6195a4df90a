"""Make tests/media/first_micro_chunk_2v.flac: the first micro chunk a chunk worker sends the
model server for the 2-voice bench conversation, sample for sample.

    python -m scripts.make_first_micro_chunk [--out tests/media]

The conversation is the one `benchmarks/bench_diarization.py` makes (`2v-10min`: Ann and Ben,
seed 102; scripts/make_conversations.py, which needs Debian's `espeak-ng`: only to regenerate,
the FLAC is committed). Its first seconds go the worker's way: the worker's FFmpeg command
(`services.chunk_worker.media.ffmpeg_command`), the worker's cutter with the orchestrator's
first micro chunk of at most 10 s (`MicroChunker`: cut in the last pause, at 9.2 s here), cut to
its speech (`pipeline.cut_to_speech`). FLAC keeps the samples exact: the model server decoded
this clip's last sentence twice, and an MP3 of it decodes without the repeat.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from scripts.make_conversations import Conversation, make_conversation
from services.chunk_worker.media import FetchOptions, ffmpeg_command, sniff_format
from services.chunk_worker.pipeline import MicroChunker, cut_to_speech
from shared.audio import pcm16_to_wav
from shared.schemas import SAMPLE_RATE_HZ, TranscribeParams
from shared.vad import speech_spans

CONVERSATION = Conversation(("Ann", "Ben"), 600, seed=102)
FIRST_MICRO_CHUNK_SEC = 10.0
"""The orchestrator's `first_micro_chunk_sec` default."""
READ_SEC = 30.0


def first_micro_chunk(mp3: Path) -> np.ndarray:
    """The int16 samples the worker sends for the file's first micro chunk."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    media = sniff_format(mp3.read_bytes()[:65536])
    command = ffmpeg_command(str(mp3), 0.0, READ_SEC, media, FetchOptions(ffmpeg_path=ffmpeg))
    wav = subprocess.run(command, check=True, capture_output=True).stdout
    pcm = np.frombuffer(wav[44:], dtype="<i2").astype(np.float32)  # mono: one channel
    params = TranscribeParams()
    chunker = MicroChunker(
        round(params.micro_chunk_size_sec * SAMPLE_RATE_HZ),
        params.silence_detection_smoothing_num_samples,
        round(FIRST_MICRO_CHUNK_SEC * SAMPLE_RATE_HZ),
    )
    first = next(iter(chunker.feed(pcm)))
    start, end, _ = cut_to_speech(speech_spans(first.samples / 32768.0))
    return first.samples[start:end].astype(np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("tests/media"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-micro-chunk-") as tmp:
        mp3 = Path(tmp) / "2v-10min.mp3"
        make_conversation(CONVERSATION, mp3, Path(tmp))
        samples = first_micro_chunk(mp3)
        wav = Path(tmp) / "clip.wav"
        wav.write_bytes(pcm16_to_wav(samples))
        out = args.out / "first_micro_chunk_2v.flac"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav),
             "-c:a", "flac", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(out)],
            check=True,
        )  # fmt: skip
    print(f"{out}: {len(samples) / SAMPLE_RATE_HZ:.3f} s")


if __name__ == "__main__":
    main()
