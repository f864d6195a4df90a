"""`python -m services.orchestrator`: serve the orchestrator."""

from __future__ import annotations

from services.orchestrator.app import create_app
from services.orchestrator.config import OrchestratorSettings
from services.serving import serve
from shared.config import from_environment

if __name__ == "__main__":
    settings = from_environment(OrchestratorSettings)
    serve(create_app(settings), settings.host, settings.port)
