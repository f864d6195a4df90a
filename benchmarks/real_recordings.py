"""Real recordings with a reference for bench-diarization, from a pinned PyPI sdist.

pyannote.audio 3.1.1's source distribution (MIT) ships a 30 s two-speaker phone call
(`tutorials/assets/sample.wav`, with `sample.rttm`) and fourteen 30 s excerpts of AMI meetings
(`tests/data/*.wav`, CC BY 4.0, with `debug.*.rttm`). The sdist is downloaded once (sha256
checked) into the cache; the call is used as it is, and the excerpts are put end to end into one
7 min recording where speakers of the same meeting recur (27 speakers in all). Both are written
as 16 kHz mono 16-bit WAV.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import wave
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

SDIST_URL = (
    "https://files.pythonhosted.org/packages/cf/8d/"
    "c6920c1c1fe439bee72c591297c69d32fe27218a96fd708e4d2274d5462c/pyannote.audio-3.1.1.tar.gz"
)
SDIST_SHA256 = "b6562d46b5d5d616c1887cafd5aab3f7d19ecf6b3312fc6c4f72f37332fcd408"
ROOT = "pyannote.audio-3.1.1/"
AMI_EXCERPTS = [f"trn0{i}" for i in range(10)] + ["dev00", "dev01", "tst00", "tst01"]
RATE = 16000

Turn = tuple[float, float, str]


@dataclass(frozen=True)
class Recording:
    name: str
    wav: Path
    reference: list[Turn]
    duration_sec: float
    description: str


def sdist(cache: Path) -> Path:
    """The sdist in `cache`, downloaded and hash-checked on first use."""
    path = cache / "pyannote.audio-3.1.1.tar.gz"
    if not path.exists() or _sha256(path) != SDIST_SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        data = httpx.get(SDIST_URL, follow_redirects=True, timeout=120).raise_for_status().content
        if hashlib.sha256(data).hexdigest() != SDIST_SHA256:
            raise SystemExit(f"{SDIST_URL}: sha256 is not {SDIST_SHA256}")
        path.write_bytes(data)
    return path


def recordings(cache: Path, folder: Path) -> list[Recording]:
    """The phone call and the AMI excerpts end to end, as WAV files in `folder`."""
    with tarfile.open(sdist(cache)) as archive:

        def read(member: str) -> bytes:
            file = archive.extractfile(ROOT + member)
            if file is None:
                raise SystemExit(f"{SDIST_URL} has no file {member}")
            return file.read()

        rttm = _rttm(read("tutorials/assets/sample.rttm").decode())
        for split in ("train", "development", "test"):
            rttm |= _rttm(read(f"tests/data/debug.{split}.rttm").decode())
        call = _samples(read("tutorials/assets/sample.wav"))
        excerpts = [_samples(read(f"tests/data/{name}.wav")) for name in AMI_EXCERPTS]
    found = [_write(folder / "call-30s.wav", call, rttm["sample"], "a real two-speaker phone call")]
    reference: list[Turn] = []
    offset = 0.0
    for name, samples in zip(AMI_EXCERPTS, excerpts, strict=True):
        reference += [(a + offset, b + offset, who) for a, b, who in rttm.get(name, [])]
        offset += len(samples) / RATE
    found.append(
        _write(
            folder / "ami-7min.wav",
            np.concatenate(excerpts),
            reference,
            "14 real AMI meeting excerpts end to end (speakers of one meeting recur)",
        )
    )
    return found


def _write(path: Path, samples: np.ndarray, reference: list[Turn], description: str) -> Recording:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    return Recording(path.stem, path, sorted(reference), len(pcm) / RATE, description)


def _samples(data: bytes) -> np.ndarray:
    """A 16 kHz mono WAV (IEEE float or 16-bit PCM) as float32."""
    from faster_whisper.audio import decode_audio

    return np.asarray(decode_audio(io.BytesIO(data), sampling_rate=RATE), dtype=np.float32)


def _rttm(text: str) -> dict[str, list[Turn]]:
    turns: dict[str, list[Turn]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER":
            start, length = float(fields[3]), float(fields[4])
            turns.setdefault(fields[1], []).append((start, start + length, fields[7]))
    return turns


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
