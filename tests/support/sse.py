"""Reading Server-Sent Events in tests: one parser, and an async job's whole event log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    id: str | None
    name: str
    data: Any


def parse_sse(lines: Iterable[str], comments: list[str] | None = None) -> Iterator[Event]:
    """The events of a stream's lines (JSON data); comments (pings) go to `comments`."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(event_id, name, json.loads("\n".join(data)))
            event_id, name, data = None, "message", []
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:  # a stream cut after its last data line
        yield Event(event_id, name, json.loads("\n".join(data)))


def job_events(
    base_url: str, job_id: str, last_event_id: int | None = None, stop_after: int | None = None
) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, event, data) of an async job's stream, all of it or the first `stop_after` events."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    found: list[tuple[int, str, dict[str, Any]]] = []
    url = f"{base_url}/v1/jobs/{job_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        for event in parse_sse(response.iter_lines()):
            assert event.id is not None, event
            found.append((int(event.id), event.name, event.data))
            if stop_after is not None and len(found) >= stop_after:
                break
    return found
