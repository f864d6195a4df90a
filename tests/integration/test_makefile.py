"""The Makefile's compose targets, as `make -n` prints them (a process: not a unit test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def makefiles(tmp_path: Path) -> Path:
    """A copy of the Makefiles (and a fleet secret), for `make -n`: nothing is run."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "deploy" / "deploy.mk", tmp_path / "deploy")
    (tmp_path / ".fleet-secret").write_text("x" * 32)
    return tmp_path


def _make_runs(root: Path, *args: str) -> str:
    return subprocess.run(
        ["make", "-n", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout


def test_make_down_removes_scaled_replicas_and_podman_compose_builds_one_at_a_time(
    makefiles: Path,
) -> None:
    """podman-compose's own `down` left replicas added by `--scale` (and so the networks); its
    parallel builds left podman a copy of the shared layers per image, and the next `make up`
    with nothing changed rebuilt the dependencies."""
    for compose in ("docker compose", "podman-compose"):
        assert " down --remove-orphans" in _make_runs(makefiles, "down", f"COMPOSE={compose}")
    assert "podman-compose --parallel 1 -f " in _make_runs(
        makefiles, "up", "COMPOSE=podman-compose"
    )
    assert "--parallel" not in _make_runs(makefiles, "up")


def test_make_adds_your_compose_override_as_plain_compose_does(makefiles: Path) -> None:
    assert "override" not in _make_runs(makefiles, "up")
    (makefiles / "docker-compose.override.yml").write_text("services: {}\n")
    for target in ("up", "up-gpu", "down", "logs"):
        assert "-f docker-compose.override.yml" in _make_runs(makefiles, target)
