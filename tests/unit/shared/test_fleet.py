"""The fleet credential (shared/fleet.py): read from settings, checked before any body is read,
refused closed, and a peer's refusal shown to end clients as the fleet's problem, not theirs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, SecretStr

from services.chunk_worker.app import create_app as create_worker
from services.chunk_worker.config import ChunkWorkerSettings
from shared import fleet
from shared.api import install_error_handlers
from shared.clients import RetryPolicy, ServiceClient
from shared.errors import FleetCredentialError, UnauthorizedError, UpstreamError
from shared.replicas import ReplicaPool
from tests.support.asgi import RawCall

SECRET = "s3cret-of-the-whole-fleet"


def test_the_secret_comes_from_the_setting_or_else_its_file(tmp_path: Path) -> None:
    file = tmp_path / "fleet"
    file.write_text(f"{SECRET}-from-file\n")
    assert fleet.load_secret(SecretStr(SECRET), file, "X_FLEET_SECRET") == SECRET
    assert fleet.load_secret(None, file, "X_FLEET_SECRET") == f"{SECRET}-from-file"
    assert fleet.load_secret(None, None, "X_FLEET_SECRET") is None
    assert fleet.load_secret(SecretStr("  "), None, "X_FLEET_SECRET") is None


def test_a_short_secret_or_a_missing_file_stops_the_start_without_showing_the_secret(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="X_FLEET_SECRET is 5 characters long") as short:
        fleet.load_secret(SecretStr("abcde"), None, "X_FLEET_SECRET")
    assert "abcde" not in str(short.value)
    with pytest.raises(ValueError, match=r"X_FLEET_SECRET_FILE=.*can.t be read"):
        fleet.load_secret(None, tmp_path / "absent", "X_FLEET_SECRET")


def test_empty_variables_mean_unset_in_every_services_settings() -> None:
    settings = ChunkWorkerSettings.model_validate({"fleet_secret": "", "fleet_secret_file": ""})
    assert settings.fleet_secret is None and settings.fleet_secret_file is None
    assert SECRET not in repr(ChunkWorkerSettings(fleet_secret=SecretStr(SECRET)))


def gate(secret: str | None) -> fleet.FleetGate:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused call must not reach the app")

    return fleet.FleetGate(app, secret=secret, setting="X_FLEET_SECRET", protects=lambda _: True)


def test_the_gate_wants_exactly_the_secret_as_a_bearer_token() -> None:
    check = gate(SECRET)
    assert check.refusal(f"Bearer {SECRET}".encode()) is None
    assert check.refusal(f"bearer {SECRET}".encode()) is None
    for offered in (b"", b"Bearer", b"Bearer ", f"Basic {SECRET}".encode(),
                    f"Bearer {SECRET}x".encode(), f"Bearer {SECRET[:-1]}".encode()):  # fmt: skip
        refusal = check.refusal(offered)
        assert isinstance(refusal, FleetCredentialError), offered
        assert "X_FLEET_SECRET" in refusal.message and SECRET not in refusal.message


def test_without_a_secret_every_call_is_refused_naming_the_setting() -> None:
    refusal = gate(None).refusal(f"Bearer {SECRET}".encode())
    assert isinstance(refusal, FleetCredentialError)
    assert refusal.status_code == 401 and "set X_FLEET_SECRET" in refusal.message
    assert refusal.headers()["WWW-Authenticate"] == "Bearer"


def test_paths_of_each_kind_of_service() -> None:
    assert not fleet.all_but_probes("/healthz") and not fleet.all_but_probes("/readyz")
    assert fleet.all_but_probes("/v1/chunks") and fleet.all_but_probes("/metrics")
    assert fleet.all_but_probes("/docs") and fleet.all_but_probes("/openapi.json")
    assert fleet.internal_only("/internal/uploads/abc")
    assert not fleet.internal_only("/v1/transcribe") and not fleet.internal_only("/healthz")
    assert fleet.internal_only("/metrics")


async def test_a_large_body_without_the_credential_is_refused_unread() -> None:
    """Regression: a worker route's pydantic body was read in full before any check ran."""
    app = create_worker(ChunkWorkerSettings(fleet_secret=SecretStr(SECRET)))
    size = 200 << 20  # 200 MiB offered
    for path in ("/v1/chunks", "/v1/silence"):
        for authorization in (None, "Bearer wrong-secret-of-the-fleet"):
            call = await RawCall(path, authorization, size).run(app)
            assert call.status == 401 and call.pieces_read == 0, (path, authorization)
            assert b"invalid_fleet_credential" in call.body
    # With the credential the same request is read: the gate is what kept these unread
    # (tests/integration/test_worker_routes.py, with the worker's lifespan).


class _Body(BaseModel):
    value: int


def _refuse() -> None:
    raise UnauthorizedError("no")


_router = APIRouter(dependencies=[Depends(_refuse)])


@_router.post("/x")
async def _route(body: _Body) -> None: ...


async def test_a_fastapi_dependency_would_have_read_the_body_first() -> None:
    """Why the gate is middleware: FastAPI reads a route's body before its dependencies run,
    router-level ones included."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(_router)
    call = await RawCall("/x", None, 3 << 20).run(app)
    assert call.status == 401 and call.pieces_read == 3


async def test_a_service_without_a_secret_refuses_internal_calls_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.fleet"):
        app = create_worker(ChunkWorkerSettings())
    assert "CHUNK_WORKER_FLEET_SECRET" in caplog.text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        for path in ("/v1/silence", "/metrics"):
            response = await client.request(
                "POST" if path != "/metrics" else "GET",
                path,
                headers={"Authorization": "Bearer anything-at-all-will-do"},
                json={},
            )
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert "set CHUNK_WORKER_FLEET_SECRET" in response.json()["error"]["message"]
        assert (await client.get("/healthz")).status_code == 200


async def test_a_peers_refusal_is_a_502_for_the_end_client_not_a_401() -> None:
    """A 401 from a worker would read as "your API key is wrong" to the orchestrator's client."""
    sent: list[httpx.Request] = []

    def peer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        refusal = fleet.FleetGate(None, secret=None, setting="PEER_FLEET_SECRET",  # type: ignore[arg-type]
                                  protects=lambda _: True).refusal(b"")  # fmt: skip
        assert refusal is not None
        return httpx.Response(401, json=refusal.body().model_dump())

    http = httpx.AsyncClient(transport=httpx.MockTransport(peer), headers=fleet.headers(SECRET))
    service = ServiceClient(http, ReplicaPool(["http://peer"]), name="peer",
                            setting_hint="PEER_URLS", retry=RetryPolicy(attempts=3))  # fmt: skip
    with pytest.raises(UpstreamError, match="peer refused this service's fleet credential") as e:
        await service.request("POST", "/v1/x")
    assert "set PEER_FLEET_SECRET" in e.value.message and e.value.status_code == 502
    assert len(sent) == 1  # not retried
    assert sent[0].headers["authorization"] == f"Bearer {SECRET}"
