"""`python -m services.whisper_gpu`: serve the model; exit 1 if it can't be loaded.

The process keeps the model's freed buffers for its next window (`shared.heap`): on a CPU,
glibc's defaults page-fault a window's working memory anew each time (a third of an encode)."""

from __future__ import annotations

import sys

import uvicorn

from services.serving import build_server
from services.whisper_gpu.app import create_app
from services.whisper_gpu.config import WhisperSettings
from shared.config import from_environment
from shared.heap import keep_working_memory


def main() -> int:
    keep_working_memory()
    settings = from_environment(WhisperSettings)
    servers: list[uvicorn.Server] = []

    def stop() -> None:
        servers[0].should_exit = True

    app = create_app(settings, on_load_failure=stop)
    servers.append(build_server(app, settings.host, settings.port))
    servers[0].run()
    return 1 if app.state.models.load_error else 0


if __name__ == "__main__":
    sys.exit(main())
