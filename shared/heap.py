"""Keeping a long-running process's heap from growing with the work it has done (glibc only).

glibc's malloc raises its mmap threshold each time a large block is freed, so after the first
few 30 s clips every clip-sized buffer (2 MB of float32) comes from the heap instead of mmap;
freed between small live objects it is never given back. Each thread that allocates also gets
an arena of its own (up to 8 per core), and each keeps its own freed blocks. So a chunk worker
streaming an 1800 s range peaked at 1.36x the RSS of a 300 s range (352 vs 260 MiB;
`make bench-media`); with a fixed 256 KiB threshold and two arenas, 1.13x (219 vs 193 MiB).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 << 10
ARENA_MAX = 2


def bound_heap() -> bool:
    """Fix malloc's mmap threshold and cap its arenas, unless the environment already sets
    them (MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX); False where the C library isn't glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: their malloc has no such knobs
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, ARENA_MAX)
    return True
