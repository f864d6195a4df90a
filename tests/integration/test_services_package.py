"""What importing the `services` package does to a service process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
"""The child imports `services` from here, wherever pytest was started."""

THREADS_AFTER_NUMPY = "{imports}; import os; print(len(os.listdir('/proc/self/task')))"


def _threads_after(imports: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", THREADS_AFTER_NUMPY.format(imports=imports)],
        env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(done.stdout)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no pool on one core")
def test_services_run_openblas_on_one_thread() -> None:
    """Regression: OpenBLAS's pool busy-waits ~0.1 s after each call (a 30 s log-mel call in the
    model server), taking a core from the model's own threads."""
    assert _threads_after("import numpy") > 1  # the pool numpy starts on its own
    assert _threads_after("import services, numpy") == 1


def test_an_orchestrator_starts_without_importing_scipy() -> None:
    """Regression: the speaker clustering's scipy imports ran at every orchestrator start
    (importing it took 2.0 CPU-s, now 1.25), though only a diarized job's end uses them."""
    probe = "import sys, services.orchestrator.__main__; print('scipy' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "False"
