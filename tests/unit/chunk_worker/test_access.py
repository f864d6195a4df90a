"""Reaching the orchestrators for uploads: any of them serves one, so a request goes on to the
next orchestrator while one can't be connected to."""

from __future__ import annotations

import httpx
import pytest

from services.chunk_worker.access import ORCHESTRATORS_BASE, OrchestratorFailover


class Orchestrators:
    """A transport playing several orchestrators: those in `down` refuse connections."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.sent: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        if request.url.netloc.decode() in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(206, content=b"x")


def client(orchestrators: Orchestrators, *urls: str) -> httpx.AsyncClient:
    inner = httpx.MockTransport(orchestrators.handle)
    return httpx.AsyncClient(transport=OrchestratorFailover(urls, inner))


async def test_a_request_goes_on_to_the_next_orchestrator_and_stays_there() -> None:
    orchestrators = Orchestrators(down={"a:8000"})
    async with client(orchestrators, "http://a:8000", "http://b:8000/") as http:
        first = await http.get(f"{ORCHESTRATORS_BASE}/internal/uploads/1?x=1")
        second = await http.get(f"{ORCHESTRATORS_BASE}/internal/uploads/1")
    assert first.status_code == second.status_code == 206
    assert first.extensions["orchestrator"] == "http://b:8000"
    sent = [(str(r.url), r.headers["host"]) for r in orchestrators.sent]
    assert sent == [
        ("http://a:8000/internal/uploads/1?x=1", "a:8000"),
        ("http://b:8000/internal/uploads/1?x=1", "b:8000"),
        ("http://b:8000/internal/uploads/1", "b:8000"),  # the one that answered, first
    ]


async def test_an_orchestrator_behind_a_path_is_asked_under_it() -> None:
    orchestrators = Orchestrators(down=set())
    async with client(orchestrators, "https://gateway/whisperfleet/") as http:
        await http.get(f"{ORCHESTRATORS_BASE}/internal/uploads/1")
    assert str(orchestrators.sent[0].url) == "https://gateway/whisperfleet/internal/uploads/1"


async def test_when_none_can_be_reached_the_error_names_each() -> None:
    orchestrators = Orchestrators(down={"a", "b"})
    async with client(orchestrators, "http://a", "http://b") as http:
        with pytest.raises(httpx.ConnectError) as failed:
            await http.get(f"{ORCHESTRATORS_BASE}/internal/uploads/1")
    assert (
        str(failed.value)
        == "no orchestrator answered: http://a (ConnectError), http://b (ConnectError)"
    )
