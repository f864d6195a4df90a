"""How many CPUs this process may really use: what threads and model replicas are sized by.

`os.cpu_count()` counts the node's cores. A container limited to 2 CPUs on a 64-core node sees
64, and a model server sized from that ran 4 replicas x 16 threads on 2 CPUs' worth of time.
The answer here is the least of
- the CPUs the process may be scheduled on (`sched_getaffinity`: cpusets, `taskset`);
- the cgroup v2 quota, `cpu.max` ("200000 100000": 2 CPUs; "max": none), of the process's own
  cgroup and every cgroup above it (inside a container the root is its own cgroup);
- the cgroup v1 quota, `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none),
each quota rounded up (1.5 CPUs of time keep 2 threads busy part of the time). Files that are
absent or unreadable count as no limit. `cgroup_root` and `proc_cgroup` are parameters so that
tests point them at a fake tree.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use (at least 1)."""
    limits: list[int | None] = [_affinity()]
    own = _own_cgroups(proc_cgroup)
    for directory in _with_parents(cgroup_root, own.get("", "/")):
        limits.append(_v2_limit(directory / "cpu.max"))
    v1_path = next((path for key, path in own.items() if "cpu" in key.split(",")), "/")
    for mount in ("cpu", "cpu,cpuacct"):
        for directory in _with_parents(cgroup_root / mount, v1_path):
            limits.append(_v1_limit(directory))
    return max(1, min(limit for limit in limits if limit is not None))


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> this process's cgroup path ("" is cgroup v2's unified hierarchy)."""
    found: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            found[parts[1]] = parts[2] or "/"
    return found


def _with_parents(root: Path, own: str) -> list[Path]:
    """`root/own` and each directory above it up to `root`, those that exist."""
    directory = root / own.strip("/")
    found = []
    while True:
        if directory.is_dir():
            found.append(directory)
        if directory == root or root not in directory.parents:
            return found
        directory = directory.parent


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpus(quota: int, period: int) -> int | None:
    return math.ceil(quota / period) if quota > 0 and period > 0 else None


def _v2_limit(cpu_max: Path) -> int | None:
    text = _read(cpu_max)
    if text is None:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not (quota.isdigit() and period.strip().isdigit()):
        return None
    return _cpus(int(quota), int(period))


def _v1_limit(directory: Path) -> int | None:
    quota = _read(directory / "cpu.cfs_quota_us")
    period = _read(directory / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    try:
        return _cpus(int(quota), int(period))
    except ValueError:
        return None
