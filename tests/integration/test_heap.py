"""shared.heap: a worker process gives large freed buffers back to the system."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
"""The child imports `services` from here, wherever pytest was started."""

RETAINED_AFTER_FREEING = """
import sys
if sys.argv[1] == "worker":
    import services.chunk_worker  # noqa: F401  (bounds the heap on import)
import numpy as np

def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

np.ones(1 << 18)  # one clip-sized buffer freed: glibc raises its mmap threshold past it
before = rss_mib()
big, small = [], []
for _ in range(60):  # clip-sized buffers between small live objects, then all freed
    big.append(np.ones(1 << 18))
    small.append(bytearray(2000))
del big
print(rss_mib() - before)
"""


def _retained_mib(mode: str) -> float:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* settings from the caller
    done = subprocess.run(
        [sys.executable, "-c", RETAINED_AFTER_FREEING, mode],
        env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_chunk_worker_gives_freed_clip_buffers_back() -> None:
    """Regression: worker peak RSS grew with the range (1800 s / 300 s: 1.36x), the freed
    clip buffers kept on the heap."""
    assert _retained_mib("plain") > 60  # what glibc keeps on its own: 60 x 2 MiB, mostly
    assert _retained_mib("worker") < 10
