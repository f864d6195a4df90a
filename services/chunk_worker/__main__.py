"""`python -m services.chunk_worker`: serve a chunk worker."""

from __future__ import annotations

import os

# One BLAS thread: the worker's numpy work is small matrices in several threads at once
# (diarization's fbank, VAD, cut search), where OpenBLAS's own pool only spins; a chunk worker
# stalled for minutes in OpenBLAS's thread hand-off (exec_blas) with it on 2 busy cores.
# Set before numpy is first imported, which is when OpenBLAS reads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from services.chunk_worker.app import create_app
from services.chunk_worker.config import ChunkWorkerSettings
from services.runner import serve

if __name__ == "__main__":
    settings = ChunkWorkerSettings()
    serve(create_app(settings), settings.host, settings.port)
