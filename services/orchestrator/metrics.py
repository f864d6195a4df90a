"""Prometheus metrics of an orchestrator, in a registry per app (no process globals): what its
jobs got back from the chunk workers. `GET /metrics` is the fleet's (its credential), like the
workers' and the model server's."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, generate_latest


class OrchestratorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.micro_chunks = Counter(
            "orchestrator_micro_chunks",
            "Micro chunk results received from the chunk workers (not those an async job "
            "replays from the job table after a restart)",
            registry=self.registry,
        )
        self.incomplete_clips = Counter(
            "orchestrator_incomplete_clips",
            "Micro chunks the model server gave up on in part (words may be missing; marked "
            "`incomplete` in the job's answer)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics, for holders of the fleet credential."""
    found: OrchestratorMetrics = request.app.state.runner.metrics
    return Response(found.render(), media_type="text/plain; version=0.0.4")
