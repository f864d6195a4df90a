"""`python -m services.chunk_worker`: serve a chunk worker."""

from __future__ import annotations

from services.chunk_worker.app import create_app
from services.chunk_worker.config import ChunkWorkerSettings
from services.serving import serve
from shared.config import from_environment

if __name__ == "__main__":
    settings = from_environment(ChunkWorkerSettings)
    serve(create_app(settings), settings.host, settings.port)
