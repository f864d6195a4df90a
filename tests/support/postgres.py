"""A throwaway PostgreSQL server for tests: Debian's binaries, a data directory in /tmp, a free
loopback port, trust authentication, no fsync. Run as the `postgres` user when the tests run
as root (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from services.stack import free_port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="whisperfleet-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server (a test's own job table); its URL."""
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as, *command], check=True, capture_output=True, timeout=120)

    def __enter__(self) -> PostgresServer:
        data = self.root / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                  "--auth=trust", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                  "-l", str(self.root / "log"), "start")  # fmt: skip
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                      "immediate", "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
