"""shared.heap: a worker process gives large freed buffers back to the system; the model server
keeps them for its next window."""

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


def _child(script: str, mode: str) -> float:
    """What `script` prints, run in a fresh interpreter with no MALLOC_* settings from the
    caller."""
    done = subprocess.run(
        [sys.executable, "-c", script, mode],
        env={"PATH": "/usr/bin:/bin"}, cwd=REPO, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    return float(done.stdout)


def _retained_mib(mode: str) -> float:
    return _child(RETAINED_AFTER_FREEING, mode)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_chunk_worker_gives_freed_clip_buffers_back() -> None:
    """Regression: worker peak RSS grew with the range (1800 s / 300 s: 1.36x), the freed
    clip buffers kept on the heap."""
    assert _retained_mib("plain") > 60  # what glibc keeps on its own: 60 x 2 MiB, mostly
    assert _retained_mib("worker") < 10


FAULTS_WHILE_REUSING = """
import ctypes, resource, sys, threading
if sys.argv[1] == "model":
    from shared.heap import keep_working_memory
    assert keep_working_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def decode_like_a_replica() -> None:  # a thread's blocks of a 30 s window's encoder, again
    for _ in range(6):  # (through malloc as CTranslate2 does: numpy asks for huge pages)
        blocks = [libc.malloc(size) for size in (72_000_000, 12_288_000)]
        for block, size in zip(blocks, (72_000_000, 12_288_000)):
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)

def run() -> None:
    threads = [threading.Thread(target=decode_like_a_replica) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]

run()  # the first window's faults are the heap growing: not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> float:
    return _child(FAULTS_WHILE_REUSING, mode)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_model_server_reuses_freed_window_buffers_without_page_faults() -> None:
    """Regression: each CPU window page-faulted its working memory anew (0.33 of 1.12 s of an
    encode in the kernel), glibc mmapping its large blocks and unmapping thread arenas' heaps."""
    assert _faults("plain") > 100_000  # 12 x 72 MB, each a fresh mapping of 17,600 pages
    assert _faults("model") < 5_000
