"""The gate in front of the public API: everything that can be decided without the body is
decided before any byte of it is read.

    request ── not under /v1/ ──> the app: health, /internal (the fleet's own rules), the page,
       │                          its static files, /docs, /openapi.json
       │ /v1/...
       ├─ 1. Host in ORCHESTRATOR_ALLOWED_HOSTS (or a loopback name)?      400, names the setting
       │     a browser page of another site (Origin, Sec-Fetch-Site)?      403
       ├─ 2. API key (auth.Gate.identify)                                  401, OpenAI's shape
       ├─ 3. a body? of the route's type (application/json, multipart)     415, says what to send
       ├─ 4. Content-Length over the route's cap?                          413
       └─ the app, its body counted as it is read: past the cap            413, the rest unread

Why a middleware: FastAPI reads a route's body before its dependencies run, so a key checked by
a dependency came after the body (a 200 MB body without a key was read to its end before the
401). Here nothing of the body has been read when a request is refused, and a refusal closes
the connection (`Connection: close`), so the server doesn't drain what the client still sends.

The order: the Host first (a page that rebinds its own name to this server learns nothing, not
even whether keys are on), and with it the page's own origin: a browser says which page sent a
request (`Origin`, `Sec-Fetch-Site`), and a page of another site may not use the API (a form
posts `multipart/form-data` across sites without asking, and the API sends no CORS headers,
so no other site's page has a use for it); programs (curl, the SDKs) send neither header.
Then the key before anything about the body (a caller without one costs a header parse); the
type before the size (a `text/plain` post is refused whatever its size).

One place decides: the key's identity goes into the request's state for the `Caller`
dependency (auth.py), and the body caps are this module's; `read_json_body` (intake.py) and the
media store's upload cap (jobs/uploads.py) stay as a second line with the same limits and wording,
the media store's also counting the file itself and the free disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api import error_response
from shared.errors import (
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    UnsupportedMediaError,
    WhisperfleetError,
)

if TYPE_CHECKING:
    from services.orchestrator.api.auth import Gate
    from services.orchestrator.config import OrchestratorSettings

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Always allowed: only a client that addressed this machine by itself sends them."""

JSON = "application/json"
MULTIPART = "multipart/form-data"

UPLOAD_ROUTES = frozenset({"/v1/transcribe", "/v1/transcribe/stream", "/v1/jobs"})
"""Routes that take JSON or an upload (multipart)."""
OPENAI_ROUTES = frozenset({"/v1/audio/transcriptions", "/v1/audio/translations"})
"""OpenAI's audio routes: multipart only, as its SDKs send them."""
RENDER_ROUTE = "/v1/render"
"""A whole transcript in JSON: its own cap (ORCHESTRATOR_MAX_RENDER_MB)."""

FORM_OVERHEAD_BYTES = 1_000_000
"""A multipart body may pass the upload cap by this much (boundaries and the other fields)."""

_HOST_NAME = re.compile(r"[0-9a-z_.:-]+")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """`name`, `name:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (name, port), in
    lower case without a trailing dot; None if it is none of those."""
    value = value.strip().lower()
    port = ""
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
        if rest and not port:
            return None
    elif value.count(":") > 1:
        name = value
    else:
        name, colon, port = value.partition(":")
        if colon and not port:
            return None
    name = name.rstrip(".")
    if not _HOST_NAME.fullmatch(name) or (port and not (port.isdigit() and int(port) < 65536)):
        return None
    return name, int(port) if port else None


class HostAllowList:
    """The Host names the public API answers to: loopback names, plus the configured ones (an
    entry with a port allows that port only); `*` allows any."""

    def __init__(self, configured: list[str]) -> None:
        self.anything = "*" in configured
        entries = (parse_host(host) for host in (*LOOPBACK_HOSTS, *configured) if host != "*")
        self._entries = {entry for entry in entries if entry is not None}
        named = (parse_host(host) for host in configured if host != "*")
        self._configured = {entry for entry in named if entry is not None}

    def configured(self, value: str) -> bool:
        """`value` is a host name configured by name (the origin of the server's own page
        behind a proxy that rewrites Host); `*` and the loopback names don't count."""
        parsed = parse_host(value)
        if parsed is None:
            return False
        return parsed in self._configured or (parsed[0], None) in self._configured

    def allows(self, value: str) -> bool:
        if self.anything:
            return True
        parsed = parse_host(value)
        if parsed is None:
            return False
        name, _ = parsed
        return parsed in self._entries or (name, None) in self._entries

    def check(self, values: list[str]) -> None:
        """400 unless the request names one allowed Host."""
        if self.anything:
            return
        if not values:
            raise BadRequestError(
                "the request has no Host header; send the name this server is reached by",
                param="Host",
            )
        for value in values:
            if not self.allows(value):
                raise BadRequestError(
                    f"this server does not answer to the host name {value[:100]!r}; if that is "
                    "its name, add it to ORCHESTRATOR_ALLOWED_HOSTS (comma-separated; loopback "
                    "names are always allowed)",
                    param="Host",
                )


CROSS_SITE = ("cross-site", "same-site")
"""`Sec-Fetch-Site` values of a request a page of another origin made (another port of this
machine is `same-site`: another program's page)."""


def check_origin(hosts: HostAllowList, host: str, origin: str | None, fetch_site: str) -> None:
    """403 for a request a browser made for a page of another origin: `Sec-Fetch-Site` says
    so, or `Origin` names neither this request's Host nor a configured host name."""
    if fetch_site.strip().lower() in CROSS_SITE:
        raise _cross_site(fetch_site.strip().lower())
    if origin is None:
        return
    scheme, _, authority = origin.strip().lower().partition("://")
    if scheme not in ("http", "https") or not authority:
        raise _cross_site(f"Origin {origin[:60]!r}")
    default_port = "443" if scheme == "https" else "80"
    if _authority(authority, default_port) == _authority(host.strip().lower(), default_port):
        return
    if hosts.configured(authority):
        return
    raise _cross_site(f"Origin {origin[:60]!r}")


def _authority(value: str, default_port: str) -> str:
    parsed = parse_host(value)
    if parsed is None:
        return value
    return f"{parsed[0]}:{parsed[1] or default_port}"


def _cross_site(what: str) -> ForbiddenError:
    return ForbiddenError(
        f"a web page of another site may not use this API ({what}); call it from a program, "
        "or from the server's own page",
        param="Origin",
    )


@dataclass(frozen=True)
class Cap:
    """A body's size limit and the 413 that names its setting."""

    limit: int
    message: str
    param: str | None = None

    def error(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(self.message, param=self.param)


@dataclass(frozen=True)
class BodyRules:
    """Which body each public route takes, and how large."""

    json: Cap
    render: Cap
    upload: Cap

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> BodyRules:
        return cls(
            json=Cap(
                settings.max_request_kb * 1024,
                f"the request body is larger than {settings.max_request_kb} KiB "
                "(ORCHESTRATOR_MAX_REQUEST_KB); media goes in a multipart `file` or behind a "
                "`media_url`, and a known speaker's reference clip needs only 2-10 s",
            ),
            render=Cap(
                settings.max_render_mb * 1_000_000,
                f"the transcript is larger than {settings.max_render_mb} MB "
                "(ORCHESTRATOR_MAX_RENDER_MB)",
            ),
            upload=Cap(
                settings.max_upload_mb * 1_000_000 + FORM_OVERHEAD_BYTES,
                f"the upload is larger than {settings.max_upload_mb} MB "
                "(ORCHESTRATOR_MAX_UPLOAD_MB); send a media URL instead",
                param="file",
            ),
        )

    def _accepted(self, route: str) -> tuple[dict[str, Cap], str]:
        """The body types `route` takes, each with its cap, and how to say so."""
        if route in OPENAI_ROUTES:
            return {MULTIPART: self.upload}, "multipart/form-data (as OpenAI's SDKs send it)"
        if route in UPLOAD_ROUTES:
            accepted = {JSON: self.json, MULTIPART: self.upload}
            return accepted, "application/json, or multipart/form-data with a `file`"
        if route == RENDER_ROUTE:
            return {JSON: self.render}, "application/json"
        return {JSON: self.json}, "application/json"

    def check(self, path: str, headers: Headers) -> Cap:
        """The cap of this request's body: 415 if it has a body of a type its route doesn't
        take, 413 if its declared length is over the cap."""
        route = path.rstrip("/") or "/"
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        declared = headers.get("content-length", "").strip()
        has_body = "transfer-encoding" in headers or (declared not in ("", "0"))
        accepted, wanted = self._accepted(route)
        cap = accepted.get(media_type)
        if cap is None:
            if has_body:
                sent = f", not {media_type}" if media_type else " (it has no Content-Type)"
                raise UnsupportedMediaError(
                    f"send the body as {wanted}{sent}", param="Content-Type"
                )
            cap = self.json
        if declared.isdigit() and int(declared) > cap.limit:
            raise cap.error()
        return cap


class GateMiddleware:
    """The checks above, as pure ASGI middleware (installed by `create_app`)."""

    def __init__(self, app: ASGIApp, settings: OrchestratorSettings) -> None:
        self.app = app
        self.hosts = HostAllowList(settings.allowed_hosts)
        self.bodies = BodyRules.from_settings(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            self.hosts.check(headers.getlist("host"))
            check_origin(
                self.hosts,
                headers.get("host", ""),
                headers.get("origin"),
                headers.get("sec-fetch-site", ""),
            )
            keys: Gate = scope["app"].state.gate
            scope.setdefault("state", {})["caller"] = keys.identify(headers.get("authorization"))
            # A path no route has is the router's 404, whatever its body (a multipart POST to
            # /v1/nothing was told to send JSON); the body stays unread and capped.
            routed = any(r.matches(scope)[0] != Match.NONE for r in scope["app"].router.routes)
            cap = self.bodies.check(path, headers) if routed else self.bodies.json
        except WhisperfleetError as refusal:
            await _refuse(refusal, scope, receive, send)
            return
        await _with_counted_body(self.app, cap, scope, receive, send)


async def _refuse(error: WhisperfleetError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer without reading the body, and close the connection: what the client still sends
    is never read."""
    response = error_response(error)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)


async def _with_counted_body(
    app: ASGIApp, cap: Cap, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the app on a body that raises 413 the moment it passes `cap` (a body sent chunked,
    or longer than declared). Whatever the app then answers (its own handler may make a 400 of
    the failed read) is replaced by the 413, unless its answer had already begun."""
    received = 0
    refused = False
    started = False

    async def counted_receive() -> Message:
        nonlocal received, refused
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap.limit:
                refused = True
                raise cap.error()
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if refused and not started:
            return
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, counted_receive, guarded_send)
    except Exception:
        if not refused or started:
            raise
    if refused and not started:
        await _refuse(cap.error(), scope, receive, send)
