"""The fleet credential: one shared secret that every call inside the fleet carries.

    orchestrator ──Bearer <secret>──> chunk worker    /v1/chunks, /v1/silence, /metrics
    chunk worker ──Bearer <secret>──> model server    /v1/clips, /metrics (every route)
    chunk worker ──Bearer <secret>──> orchestrator    /internal/uploads/<id> (only those)

Every service reads it from its own `<PREFIX>FLEET_SECRET` (or `<PREFIX>FLEET_SECRET_FILE`, a
mounted Secret); `make run` generates one per start (services/stack.py), Compose and Kubernetes
take it from the deployment's secret. It is compared in constant time and never logged.

`FleetGate` is ASGI middleware, not a FastAPI dependency: FastAPI reads a route's body before
it solves the route's dependencies (router-level ones included), so a dependency would let any
caller make a worker read a body it then refuses. The gate answers before the app sees the
request. It fails closed: a service without a secret refuses every protected call (401 naming
the setting to set) and says so in its log at start. `/healthz` and `/readyz` stay open for
probes. A peer's refusal reaches the end client as a 502 naming the setting (shared/clients.py),
not as a 401 that would read as "your API key is wrong".
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.api import error_response
from shared.errors import FleetCredentialError

logger = logging.getLogger(__name__)

MIN_SECRET_CHARS = 16
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""What every service answers without the credential: probes."""
HOW_TO_MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def load_secret(value: SecretStr | None, file: Path | None, setting: str) -> str | None:
    """The configured secret: `value`, else the first line of `file`; None when neither is set.
    A secret shorter than MIN_SECRET_CHARS is refused (ValueError, without its value)."""
    secret = value.get_secret_value().strip() if value is not None else ""
    if not secret and file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"{setting}_FILE={file} can't be read ({exc.strerror})") from None
        secret = lines[0].strip() if lines else ""
    if not secret:
        return None
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{setting} is {len(secret)} characters long; use at least {MIN_SECRET_CHARS} "
            f"random ones, e.g. from `{HOW_TO_MAKE_ONE}`"
        )
    return secret


def headers(secret: str | None) -> dict[str, str]:
    """What a client of the fleet's internal routes sends (nothing without a secret)."""
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def all_but_probes(path: str) -> bool:
    """The chunk workers and the model server: every route is internal except the probes."""
    return path not in OPEN_PATHS


def internal_only(path: str) -> bool:
    """The orchestrator: `/internal/...` and `/metrics` are for the fleet; the rest is its
    public API."""
    return path.startswith("/internal/") or path == "/metrics"


class FleetGate:
    """ASGI middleware: a request for a path `protects` accepts is answered 401, unread, unless
    it carries `Authorization: Bearer <secret>`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: str | None,
        setting: str,
        protects: Callable[[str], bool],
    ) -> None:
        self.app = app
        self._secret = secret.encode() if secret else None
        self.setting = setting
        self.protects = protects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.protects(scope["path"]):
            authorization = dict(scope["headers"]).get(b"authorization", b"")
            refusal = self.refusal(authorization)
            if refusal is not None:
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, authorization: bytes) -> FleetCredentialError | None:
        """Why a call with this Authorization header is refused (None: it is not)."""
        if self._secret is None:
            return FleetCredentialError(
                f"this service has no fleet secret, so it refuses every internal call: set "
                f"{self.setting} (or {self.setting}_FILE) to the secret the whole fleet shares"
            )
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._secret):
            return None
        return FleetCredentialError(
            "this is an internal route of the fleet: send 'Authorization: Bearer <the fleet "
            f"secret>', the value of {self.setting} here"
        )


def install(
    app: FastAPI, secret: str | None, setting: str, protects: Callable[[str], bool]
) -> None:
    """Put a `FleetGate` in front of `app`; without a secret, log that its internal routes
    refuse every call."""
    if secret is None:
        logger.warning(
            "no fleet secret: internal routes refuse every call until %s (or %s_FILE) is set "
            "to the secret the whole fleet shares",
            setting,
            setting,
        )
    app.add_middleware(FleetGate, secret=secret, setting=setting, protects=protects)
