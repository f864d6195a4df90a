"""Serving an app with uvicorn, the same way for every service."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

_PROBE_PATHS = ('"GET /healthz ', '"GET /readyz ', '"GET /metrics ')


class _DropProbes(logging.Filter):
    """Health probes and metric scrapes every few seconds would drown the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(path in message for path in _PROBE_PATHS)


def build_server(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Server:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("uvicorn.access").addFilter(_DropProbes())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5
    )
    return uvicorn.Server(config)


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    build_server(app, host, port, log_level).run()
