"""How a long-running process's malloc treats large freed blocks (glibc only): two opposite needs.

A chunk worker must not grow with the work it has done. glibc's malloc raises its mmap
threshold each time a large block is freed, so after the first few 30 s clips every clip-sized
buffer (2 MB of float32) comes from the heap instead of mmap; freed between small live objects
it is never given back. Each thread that allocates also gets an arena of its own (up to 8 per
core), and each keeps its own freed blocks. So a chunk worker streaming an 1800 s range peaked
at 1.36x the RSS of a 300 s range (352 vs 260 MiB; `make bench-media`); with a fixed 256 KiB
threshold and two arenas, 1.13x (219 vs 193 MiB): `bound_heap`.

The model server does the same work again and again, and should keep its buffers. A CPU decode
frees and allocates blocks of tens of MB per layer (an encoder's attention scores, 72 MB for a
30 s window of `base`). glibc serves any block over 32 MB from a fresh mmap and gives it back on
free, trims the heap's top, and a thread's own arena lives in 64 MB heaps that are mapped and
unmapped as it fills and empties; so each window page-faults its working memory anew: ~115,000
faults and 0.33 s of kernel time per 26 s window of `base` on one AMD EPYC thread, whose
encode took 1.12 s with them and 0.80 s without. `keep_working_memory` serves every block from
the one main heap (it grows without a cap) and keeps what is freed: a 20-min job's model
server spent 0.8-1.6 kernel CPU-s instead of 14.5-15.7, 125-129 CPU-s in all instead of
139-144, and peaked at 0.77-0.84 GB RSS instead of 1.00-1.17 GB (one heap, not an arena per
thread). Sharing one arena's lock did not show: user CPU 123.7-128.1 s against 121.6-128.4 s
(two replica threads; the model asks malloc for a few large blocks per layer, between matrix
products that take far longer).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 << 10
ARENA_MAX = 2
LARGE_MMAP_THRESHOLD_BYTES = 1 << 30
"""Blocks below this come from the heap (glibc's default ceiling is 32 MB)."""
NEVER_TRIM_BYTES = (1 << 31) - 1
"""The free space at the heap's top that triggers giving it back (mallopt takes an int)."""


def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: their malloc has no such knobs
        return None


def _set(settings: dict[str, tuple[int, int]]) -> bool:
    """mallopt each `ENV_NAME: (parameter, value)` the environment doesn't set already; False
    where the C library isn't glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    for env_name, (parameter, value) in settings.items():
        if env_name not in os.environ:
            mallopt(parameter, value)
    return True


def bound_heap() -> bool:
    """Fix malloc's mmap threshold and cap its arenas, unless the environment already sets
    them (MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX); False where the C library isn't glibc."""
    return _set(
        {
            "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            "MALLOC_ARENA_MAX": (M_ARENA_MAX, ARENA_MAX),
        }
    )


def keep_working_memory() -> bool:
    """Serve blocks up to 1 GiB from one arena's heap and never trim it, so freed buffers are
    reused without page faults, unless the environment already sets them
    (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX); False where the C
    library isn't glibc."""
    return _set(
        {
            "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, LARGE_MMAP_THRESHOLD_BYTES),
            "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, NEVER_TRIM_BYTES),
            "MALLOC_ARENA_MAX": (M_ARENA_MAX, 1),
        }
    )
