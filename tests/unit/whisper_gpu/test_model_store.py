"""Packaged models: found through package metadata, assembled once, refused when altered."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.whisper_gpu.model_store import (
    PACKAGED_MODELS,
    ModelPackageError,
    PackagedModel,
    PackagePart,
    _assemble,
    packaged_model_dir,
)


def test_tiny_en_is_assembled_once_and_verified(tmp_path: Path) -> None:
    directory = packaged_model_dir("tiny.en", tmp_path)
    expected = PACKAGED_MODELS["tiny.en"].sha256
    assert hashlib.sha256((directory / "model.bin").read_bytes()).hexdigest() == expected
    assert {p.name for p in directory.iterdir()} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt"
    }  # fmt: skip
    assert packaged_model_dir("tiny.en", tmp_path) == directory
    assert [p.name for p in tmp_path.iterdir()] == [directory.name]  # no staging left behind


def test_an_altered_cached_model_is_refused(tmp_path: Path) -> None:
    directory = packaged_model_dir("tiny.en", tmp_path)
    with (directory / "model.bin").open("r+b") as model:
        model.seek(1000)
        model.write(b"\0\1\2")
    with pytest.raises(ModelPackageError, match="altered"):
        packaged_model_dir("tiny.en", tmp_path)


@pytest.fixture
def fake_distribution(tmp_path: Path) -> Iterator[Path]:
    """A real (tiny) installed distribution on sys.path, found by importlib.metadata."""
    site = tmp_path / "site"
    package = site / "fake_weights" / "data"
    package.mkdir(parents=True)
    (package / "model.bin").write_bytes(b"not the model you are looking for")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (package / name).write_text("{}")
    info = site / "fake_weights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-weights\nVersion: 1.0\n")
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))


def test_weights_with_the_wrong_hash_are_refused_and_nothing_is_left(
    fake_distribution: Path, tmp_path: Path
) -> None:
    model = PackagedModel(
        name="fake",
        parts=(PackagePart("fake-weights", "fake_weights/data/model.bin"),),
        side_dir=PackagePart("fake-weights", "fake_weights/data"),
        sha256="0" * 64,
        size=10,
    )
    cache = tmp_path / "cache"
    with pytest.raises(ModelPackageError, match="refusing to load"):
        _assemble(model, cache / "fake")
    assert list(cache.iterdir()) == []


def test_a_missing_package_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    model = PackagedModel(
        name="ghost",
        parts=(PackagePart("no-such-weights-package", "x/model.bin"),),
        side_dir=PackagePart("no-such-weights-package", "x"),
        sha256="0" * 64,
        size=1,
    )
    with pytest.raises(ModelPackageError, match=r"no-such-weights-package.*make setup"):
        _assemble(model, tmp_path / "ghost")
