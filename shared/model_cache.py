"""The model cache's two habits, shared by the Whisper weights (services/whisper_gpu/model_store.py)
and the diarization models (shared/diarization/weights.py): hash files in pieces, and publish a
directory whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A directory to fill, next to `target`, renamed to it when the block ends: a crash or a
    refusal inside the block leaves nothing behind, never half a model. If another process
    published `target` first, its copy stays (whoever reads it checks its hashes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
