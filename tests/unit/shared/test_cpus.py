"""CPU placement from the container's quota (shared/cpus.py), over fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.loading import choose_placement
from shared.cpus import available_cpus

AFFINITY = len(os.sched_getaffinity(0))


def tree(tmp_path: Path, files: dict[str, str], own: str = "0::/\n") -> tuple[Path, Path]:
    """A fake /sys/fs/cgroup with `files` (relative path -> content) and /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(own)
    return root, proc


@pytest.fixture
def many_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-CPU node, as far as affinity goes: the quota is what must limit."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(64)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)


@pytest.mark.usefixtures("many_cpus")
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("max 100000\n", 64),
        ("200000 100000\n", 2),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("garbage", 64),
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, content: str, expected: int) -> None:
    root, proc = tree(tmp_path, {"cpu.max": content})
    assert available_cpus(root, proc) == expected


@pytest.mark.usefixtures("many_cpus")
def test_cgroup_v2_own_group_and_the_groups_above_it(tmp_path: Path) -> None:
    """Without a cgroup namespace the process's own group is a subdirectory; a parent's
    quota (a Kubernetes pod's, above its container's) limits too."""
    files = {"kubepods/pod1/cpu.max": "300000 100000", "kubepods/pod1/ctr/cpu.max": "max 100000"}
    root, proc = tree(tmp_path, files, own="0::/kubepods/pod1/ctr\n")
    assert available_cpus(root, proc) == 3


@pytest.mark.usefixtures("many_cpus")
@pytest.mark.parametrize(("quota", "expected"), [("-1", 64), ("400000", 4), ("250000", 3)])
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: str, expected: int) -> None:
    files = {"cpu,cpuacct/cpu.cfs_quota_us": quota, "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    root, proc = tree(tmp_path, files, own="4:cpu,cpuacct:/\n0::/\n")
    assert available_cpus(root, proc) == expected


@pytest.mark.usefixtures("many_cpus")
def test_absent_files_mean_no_limit(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "nothing", tmp_path / "no-proc-file") == 64


def test_affinity_limits_below_a_larger_quota(tmp_path: Path) -> None:
    root, proc = tree(tmp_path, {"cpu.max": f"{(AFFINITY + 8) * 100000} 100000"})
    assert available_cpus(root, proc) == AFFINITY


@pytest.mark.usefixtures("many_cpus")
def test_the_model_server_is_placed_by_the_quota_not_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a pod limited to 2 CPUs on a 64-core node ran 4 replicas x 16 threads."""
    root, proc = tree(tmp_path, {"cpu.max": "200000 100000"})
    monkeypatch.setattr("services.whisper_gpu.loading.available_cpus",
                        lambda: available_cpus(root, proc))  # fmt: skip
    placement = choose_placement(WhisperSettings(device="cpu"))
    assert (placement.replicas, placement.threads_per_replica) == (2, 1)
