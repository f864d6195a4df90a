"""The whole stack as local processes, without Docker: `make run` and the end-to-end tests.

    python -m services.stack [--port 8000] [--workers 2]

Starts the model server, the chunk workers and the orchestrator, each as its own process with
its settings passed by environment variables, waits until every one answers `/readyz`, prints the
orchestrator URL and stops them all on Ctrl-C (or when any of them dies). The services share a
fleet secret made for this start (`secrets.token_urlsafe`), unless `WHISPERFLEET_FLEET_SECRET`
gives one.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from services.whisper_gpu.config import WhisperSettings
from shared.config import from_environment

LOCAL_NETWORKS = "127.0.0.0/8,::1"
"""What `make run` lets media URLs reach besides the internet: this machine."""
FLEET_SECRET_VARIABLE = "WHISPERFLEET_FLEET_SECRET"
"""The environment variable that gives the stack its fleet secret (Compose reads it too)."""


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the launcher dies, so no service is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


_HANDED_OUT: set[int] = set()
"""Ports this process has given to a service, so no two of its services get the same one."""


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a service about to start, chosen below the kernel's
    ephemeral range: a port the kernel picked for us (bind to 0) is also what it hands out to
    outgoing connections, and one of those may take it before the service binds it."""
    low = _ephemeral_ports()[0]
    for _ in range(200):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _HANDED_OUT.add(port)
        return port
    raise OSError(f"no free port on {host}")


@dataclass
class ServiceProcess:
    name: str
    module: str
    port: int
    env: dict[str, str] = field(repr=False)  # holds the fleet secret
    host: str = "127.0.0.1"
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self._log = output = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops the children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_sec: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_sec)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class LocalStack:
    """Model server + `workers` chunk workers + orchestrator on loopback ports."""

    port: int = 8000
    workers: int = 2
    whisper_port: int = 8002
    worker_base_port: int = 8010
    worker_ports: list[int] | None = None
    """Explicit worker ports; default: consecutive ports from `worker_base_port`."""
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every service (e.g. WHISPER_MODEL=random-tiny)."""
    log_dir: Path | None = None
    """Write each service's output to `<log_dir>/<name>.log` instead of this terminal."""
    fleet_secret: str = field(default="", repr=False)
    """The secret every service is given (`*_FLEET_SECRET`); default: $WHISPERFLEET_FLEET_SECRET,
    else a new random one. Tests send it to call a worker or the model server directly."""
    services: list[ServiceProcess] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        def log(name: str) -> Path | None:
            return self.log_dir / f"{name}.log" if self.log_dir else None

        self.fleet_secret = (
            self.fleet_secret
            or os.environ.get(FLEET_SECRET_VARIABLE, "")
            or secrets.token_urlsafe(32)
        )
        whisper = ServiceProcess(
            "whisper_gpu",
            "services.whisper_gpu",
            self.whisper_port,
            {
                "WHISPER_HOST": self.host,
                "WHISPER_PORT": str(self.whisper_port),
                "WHISPER_FLEET_SECRET": self.fleet_secret,
                **self.env,
            },
            self.host,
            log("whisper_gpu"),
        )
        ports = self.worker_ports or [self.worker_base_port + i for i in range(self.workers)]
        workers = [
            ServiceProcess(
                f"chunk_worker_{i}",
                "services.chunk_worker",
                port,
                {
                    "CHUNK_WORKER_HOST": self.host,
                    "CHUNK_WORKER_PORT": str(port),
                    "CHUNK_WORKER_WHISPER_URLS": whisper.url,
                    "CHUNK_WORKER_ORCHESTRATOR_URLS": self.url,
                    "CHUNK_WORKER_FLEET_SECRET": self.fleet_secret,
                    **self.env,
                },
                self.host,
                log(f"chunk_worker_{i}"),
            )
            for i, port in enumerate(ports)
        ]
        orchestrator = ServiceProcess(
            "orchestrator",
            "services.orchestrator",
            self.port,
            {
                "ORCHESTRATOR_HOST": self.host,
                "ORCHESTRATOR_PORT": str(self.port),
                "ORCHESTRATOR_WORKER_URLS": ",".join(w.url for w in workers),
                "ORCHESTRATOR_FLEET_SECRET": self.fleet_secret,
                "ORCHESTRATOR_MODEL_NAME": self.env.get(
                    "WHISPER_MODEL",
                    os.environ.get("WHISPER_MODEL", from_environment(WhisperSettings).model),
                ),
                **self.env,
            },
            self.host,
            log("orchestrator"),
        )
        self.services = [whisper, *workers, orchestrator]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def service(self, name: str) -> ServiceProcess:
        return next(s for s in self.services if s.name == name)

    def start(self, timeout_sec: float = 300.0) -> None:
        for service in self.services:
            service.start()
        try:
            self.wait_ready(timeout_sec)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_sec: float) -> None:
        deadline = time.monotonic() + timeout_sec
        pending = list(self.services)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for service in list(pending):
                    assert service.process is not None
                    if service.process.poll() is not None:
                        raise RuntimeError(
                            f"{service.name} exited with code {service.process.returncode}\n"
                            f"{service.log_tail()}"
                        )
                    try:
                        if client.get(f"{service.url}/readyz").status_code == 200:
                            pending.remove(service)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(s.name for s in pending)
                    raise TimeoutError(f"not ready after {timeout_sec:g} s: {names}")
                if pending:
                    time.sleep(0.2)

    def first_exited(self) -> ServiceProcess | None:
        return next(
            (s for s in self.services if s.process is not None and s.process.poll() is not None),
            None,
        )

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000, help="orchestrator port (default 8000)")
    parser.add_argument("--workers", type=int, default=2, help="chunk workers (default 2)")
    parser.add_argument("--whisper-port", type=int, default=8002)
    parser.add_argument("--worker-base-port", type=int, default=8010)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    env: dict[str, str] = {}
    networks = os.environ.get("ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS")
    if networks is None:
        networks = env["ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS"] = LOCAL_NETWORKS
        print(
            f"media URLs on this machine are allowed (ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS="
            f"{LOCAL_NETWORKS}); set that variable to change it"
        )
    if "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS" not in os.environ:
        env["CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS"] = networks  # their own rule: the same one
    stack = LocalStack(
        port=args.port,
        workers=args.workers,
        whisper_port=args.whisper_port,
        worker_base_port=args.worker_base_port,
        host=args.host,
        env=env,
    )
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    model = os.environ.get("WHISPER_MODEL") or from_environment(WhisperSettings).model
    print(f"starting the model server ({model}), {args.workers} chunk workers, orchestrator ...")
    try:
        stack.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nstack failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"\nWhisperfleet is ready: {stack.url}  (API docs: {stack.url}/docs; Ctrl-C stops)\n")
    try:
        while not stopping:
            dead = stack.first_exited()
            if dead is not None:
                code = dead.process.returncode if dead.process else "?"
                print(f"{dead.name} exited with code {code}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        print("stopping ...")
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
