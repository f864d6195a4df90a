"""Starting the real stack for tests: every service a process on a free loopback port."""

from __future__ import annotations

from pathlib import Path

from services.stack import LOCAL_NETWORKS, LocalStack, ServiceProcess, free_port


def start_stack(
    log_dir: Path, model_cache_dir: Path, workers: int = 2, port: int | None = None, **env: str
) -> LocalStack:
    """The stack with the random offline model; `env` overrides any service setting. Uploads
    go to `<log_dir>/uploads`. `port`: the orchestrator's (default: a free one). The workers
    load no speaker models (0.9 CPU-s per worker start, ~40 starts in a run) unless `env`
    turns diarization on, as `english_stack` does for the tests that diarize."""
    stack = LocalStack(
        port=port or free_port(),
        workers=workers,
        whisper_port=free_port(),
        worker_ports=[free_port() for _ in range(workers)],
        env={
            "WHISPER_MODEL": "random-tiny",
            "WHISPER_MODEL_CACHE_DIR": str(model_cache_dir),
            "WHISPER_CPU_THREADS": "1",
            "ORCHESTRATOR_UPLOAD_DIR": str(log_dir / "uploads"),
            "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{log_dir / 'jobs.db'}",
            "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,  # the tests' media host
            "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS": LOCAL_NETWORKS,
            "CHUNK_WORKER_DIARIZATION": "false",
            **env,
        },
        log_dir=log_dir,
    )
    stack.start(timeout_sec=120)
    return stack


def add_orchestrator(
    stack: LocalStack, name: str, port: int | None = None, **env: str
) -> ServiceProcess:
    """One more orchestrator process beside `stack`'s, sharing its workers (and its job table
    when that is PostgreSQL), on its own port, with its own upload directory
    (`<log_dir>/<name>-uploads`) and log; `env` overrides its settings. It is stopped with the
    stack."""
    assert stack.log_dir is not None
    first = stack.service("orchestrator")
    port = port or free_port()
    process = ServiceProcess(
        name,
        "services.orchestrator",
        port,
        {
            **first.env,
            "ORCHESTRATOR_PORT": str(port),
            "ORCHESTRATOR_UPLOAD_DIR": str(stack.log_dir / f"{name}-uploads"),
            **env,
        },
        stack.host,
        stack.log_dir / f"{name}.log",
    )
    stack.services.append(process)
    process.start()
    stack.wait_ready(120)
    return process
