"""`python -m services.whisper_gpu`: serve the model; exit 1 if it can't be loaded."""

from __future__ import annotations

import sys

from services.runner import serve
from services.whisper_gpu.app import create_app
from services.whisper_gpu.config import WhisperSettings

if __name__ == "__main__":
    settings = WhisperSettings()
    app = create_app(settings)
    serve(app, settings.host, settings.port)
    sys.exit(1 if app.state.models.load_error else 0)
