"""SQLite as the job table: its file, one orchestrator per file, and its connection settings."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite database URL (None: not SQLite, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def single_writer(url: str) -> Iterator[None]:
    """SQLite: one orchestrator per database file. An exclusive lock on `<file>.lock`, held
    for the app's life (migrations run under it), refuses a second process on the same file
    with a message that says what to do; PostgreSQL: nothing to hold."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another orchestrator already uses the SQLite job table {path} (it holds "
                f"{lock}): SQLite serves one orchestrator; for several replicas set "
                "ORCHESTRATOR_DATABASE_URL=postgresql://..., or give this one its own file"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer; foreign keys on (SQLite's default is off)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
