"""The deployment files against the services: `make check-compose` inside `make test`.

The first tests run the real checks on the real files; the rest feed the checker modified
in-memory copies to prove it catches each kind of mistake.
"""

from __future__ import annotations

import ast
import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts.check_compose import (
    BASE_FILE,
    GPU_FILE,
    K8S_DIR,
    ROOT,
    Interpolator,
    ServiceCode,
    check,
    check_environment,
    check_kubernetes,
    environment,
    load_k8s,
    load_yaml,
    merge,
    run,
)

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def base() -> Doc:
    return load_yaml(ROOT / BASE_FILE)


@pytest.fixture(scope="module")
def gpu() -> Doc:
    return load_yaml(ROOT / GPU_FILE)


def test_compose_files_and_manifests_match_the_services() -> None:
    report = run()
    assert report.ok, "\n".join(report.problems)


def test_the_gpu_merge_runs_cuda_float16_with_a_gpu_and_gpu_batching(base: Doc, gpu: Doc) -> None:
    cpu = Interpolator(env={}).document(base)["services"]["whisper"]
    whisper = Interpolator(env={}).document(merge(base, gpu))["services"]["whisper"]
    env, cpu_env = environment(whisper), environment(cpu)
    assert whisper["build"] == {
        "context": ".",
        "dockerfile": "services/whisper_gpu/Dockerfile.cuda",
    }
    assert (env["WHISPER_DEVICE"], env["WHISPER_COMPUTE_TYPE"]) == ("cuda", "float16")
    assert int(env["WHISPER_MAX_BATCH_SIZE"] or 0) > int(cpu_env["WHISPER_MAX_BATCH_SIZE"] or 0)
    device = whisper["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"]
    # Everything else is the base's.
    assert env["WHISPER_MODEL"] == cpu_env["WHISPER_MODEL"] == "base"
    assert whisper["healthcheck"] == cpu["healthcheck"]
    assert whisper["volumes"] == cpu["volumes"]


def test_only_the_orchestrator_is_published_and_workers_scale_by_replicas(base: Doc) -> None:
    services = Interpolator(env={"CHUNK_WORKERS": "3"}).document(base)["services"]
    assert [name for name, spec in services.items() if spec.get("ports")] == ["orchestrator"]
    assert services["chunk_worker"]["deploy"]["replicas"] == "3"
    assert Interpolator(env={}).document(base)["services"]["chunk_worker"]["deploy"] == {
        "replicas": "2"
    }


def test_every_service_gets_the_one_fleet_secret_compose_requires(base: Doc) -> None:
    secret = "one-secret-for-the-whole-fleet"
    services = Interpolator(env={"WHISPERFLEET_FLEET_SECRET": secret}).document(base)["services"]
    given = {
        name: value
        for name, spec in services.items()
        for key, value in environment(spec).items()
        if key.endswith("_FLEET_SECRET")
    }
    assert given == {"orchestrator": secret, "chunk_worker": secret, "whisper": secret}
    unset = Interpolator(env={})
    unset.document(base)
    assert "WHISPERFLEET_FLEET_SECRET" in unset.required  # compose refuses to start without it


# ---- the checker catches mistakes ----------------------------------------------------------


def _set_env(service: str, key: str, value: str | None) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["services"][service]["environment"][key] = value

    return mutate


def _rename_env(service: str, old: str, new: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        env = doc["services"][service]["environment"]
        env[new] = env.pop(old)

    return mutate


def _health(service: str, command: list[str]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["services"][service]["healthcheck"]["test"] = command

    return mutate


def _probe(url: str) -> list[str]:
    return ["CMD-SHELL", f"python -c \"import urllib.request; urllib.request.urlopen('{url}')\""]


def _set(service: str, key: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["services"][service][key] = value

    return mutate


BASE_MISTAKES: list[tuple[str, Callable[[Doc], None], list[str]]] = [
    (
        "typo in an env var",
        _rename_env(
            "chunk_worker", "CHUNK_WORKER_MAX_INFLIGHT_CLIPS", "CHUNK_WORKER_MAX_INFLIGHT_CLIP"
        ),
        [
            "CHUNK_WORKER_MAX_INFLIGHT_CLIP is not a setting of ChunkWorkerSettings "
            "(did you mean CHUNK_WORKER_MAX_INFLIGHT_CLIPS?)",
            "setting max_inflight_clips is not reachable",
        ],
    ),
    (
        "wrong health path",
        _health("orchestrator", _probe("http://127.0.0.1:8000/ready")),
        ["healthcheck path /ready is not a health route of the app"],
    ),
    (
        "health on the wrong port",
        _health("whisper", _probe("http://127.0.0.1:8001/readyz")),
        ["healthcheck calls port 8001; the service listens on 8002"],
    ),
    (
        "CMD healthcheck form",
        _health("chunk_worker", ["CMD", "python", "-c", "..."]),
        ['healthcheck test must be ["CMD-SHELL"'],
    ),
    (
        "a worker published",
        _set("chunk_worker", "ports", ["8001:8001"]),
        ["service chunk_worker: publishes ports"],
    ),
    (
        "published port not the one the service listens on",
        _set("orchestrator", "ports", ["127.0.0.1:8000:8080"]),
        ["does not target the service's port 8000"],
    ),
    (
        "invalid default",
        _set_env("whisper", "WHISPER_BEAM_SIZE", "${WHISPER_BEAM_SIZE:-50}"),
        ["WHISPER_BEAM_SIZE='50' is invalid"],
    ),
    (
        "default drifted from Settings",
        _set_env(
            "chunk_worker",
            "CHUNK_WORKER_MAX_INFLIGHT_CLIPS",
            "${CHUNK_WORKER_MAX_INFLIGHT_CLIPS:-4}",
        ),
        ["CHUNK_WORKER_MAX_INFLIGHT_CLIPS defaults to 4 here but 8 in ChunkWorkerSettings"],
    ),
    (
        "peer URL on the wrong port",
        _set_env("orchestrator", "ORCHESTRATOR_WORKER_URLS", "http://chunk_worker:8002"),
        ["ORCHESTRATOR_WORKER_URLS uses port 8002 but chunk_worker listens on 8001"],
    ),
    (
        "peer URL naming no service",
        _set_env("chunk_worker", "CHUNK_WORKER_WHISPER_URLS", "http://whisper_gpu:8002"),
        ["CHUNK_WORKER_WHISPER_URLS names 'whisper_gpu', which is not a service here"],
    ),
    (
        "dependency not waiting for health",
        _set("orchestrator", "depends_on", ["chunk_worker"]),
        ["depends_on chunk_worker must use condition: service_healthy"],
    ),
    (
        "model cache not on a volume",
        _set("whisper", "volumes", []),
        ["the model cache /models is not a volume"],
    ),
    (
        "no internal network",
        _set("whisper", "networks", ["outbound"]),
        ["service whisper: is on no internal network"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in BASE_MISTAKES],
)
def test_the_checker_catches(
    base: Doc, gpu: Doc, mutate: Callable[[Doc], None], expected: list[str]
) -> None:
    broken = copy.deepcopy(base)
    mutate(broken)
    problems = "\n".join(check(broken, gpu).problems)
    for text in expected:
        assert text in problems


GPU_MISTAKES: list[tuple[str, Callable[[Doc], None], str]] = [
    (
        "another service",
        lambda doc: doc["services"].update({"chunk_worker": {"environment": {"X": "1"}}}),
        "service chunk_worker: only the model server may change",
    ),
    (
        "another key",
        lambda doc: doc["services"]["whisper"].update({"ports": ["8002:8002"]}),
        "whisper.ports: not a GPU setting",
    ),
    (
        "another setting",
        lambda doc: doc["services"]["whisper"]["environment"].update({"WHISPER_MODEL": "large"}),
        "whisper.environment.WHISPER_MODEL: not a GPU setting",
    ),
    (
        "no GPU reserved",
        lambda doc: doc["services"]["whisper"].pop("deploy"),
        "whisper reserves no device with capabilities [gpu]",
    ),
    (
        "not float16",
        lambda doc: doc["services"]["whisper"]["environment"].update(
            {"WHISPER_COMPUTE_TYPE": "int8"}
        ),
        "must run with WHISPER_DEVICE=cuda and WHISPER_COMPUTE_TYPE=float16",
    ),
    (
        "typo in an overlay setting",
        lambda doc: doc["services"]["whisper"]["environment"].update(
            {"WHISPER_MAX_BATCH_SIZ": "16"}
        ),
        "WHISPER_MAX_BATCH_SIZ is not a setting of WhisperSettings",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in GPU_MISTAKES],
)
def test_the_checker_catches_in_the_gpu_overlay(
    base: Doc, gpu: Doc, mutate: Callable[[Doc], None], expected: str
) -> None:
    broken = copy.deepcopy(gpu)
    mutate(broken)
    assert expected in "\n".join(check(base, broken).problems)


class _NeedsToken(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    token: str
    port: int = Field(9000)


def test_a_setting_without_default_must_be_given_a_value() -> None:
    code = ServiceCode("demo", _NeedsToken, lambda: pytest.fail("no app needed"))
    problems: list[str] = []

    def problem(service: str, text: str) -> None:
        problems.append(text)

    check_environment("demo", {}, {"DEMO_TOKEN": None, "DEMO_PORT": "9000"}, code, problem)
    assert "DEMO_TOKEN has no default in _NeedsToken and must be given a value" in problems
    problems.clear()
    check_environment("demo", {}, {"DEMO_TOKEN": "t", "DEMO_PORT": "9000"}, code, problem)
    assert problems == []


# ---- Compose semantics the checker relies on -----------------------------------------------


def test_interpolation_follows_compose() -> None:
    interpolate = Interpolator(env={"SET": "x", "EMPTY": ""})
    assert interpolate.string("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET}") == "x d  d "
    assert interpolate.string("$$HOME $SET ${SET:+alt} ${UNSET:+alt}") == "$HOME x alt "
    assert interpolate.string("${NEEDED:?set NEEDED}") == ""
    assert interpolate.required == {"NEEDED"}


def test_merge_follows_compose_rules() -> None:
    base = {
        "services": {
            "s": {
                "build": ".",
                "environment": ["A=1", "B=2"],
                "ports": ["1:1"],
                "healthcheck": {"test": ["CMD-SHELL", "a"], "interval": "5s"},
                "volumes": ["data:/data", "logs:/logs"],
            }
        },
        "volumes": {"data": {}},
    }
    override = {
        "services": {
            "s": {
                "build": {"dockerfile": "Other"},
                "environment": {"B": "3", "C": None},
                "ports": ["2:2"],
                "healthcheck": {"test": ["CMD-SHELL", "b"]},
                "volumes": ["other:/data"],
            }
        }
    }
    merged = merge(base, override)["services"]["s"]
    assert merged["build"] == {"context": ".", "dockerfile": "Other"}
    assert merged["environment"] == {"A": "1", "B": "3", "C": None}
    assert merged["ports"] == ["1:1", "2:2"]
    assert merged["healthcheck"] == {"test": ["CMD-SHELL", "b"], "interval": "5s"}
    assert merged["volumes"] == ["logs:/logs", "other:/data"]


# ---- the images -------------------------------------------------------------------------------

DOCKERFILES = sorted((ROOT / "services").glob("*/Dockerfile*"))


def _stages(dockerfile: Path) -> dict[str, list[str]]:
    """Each stage's instructions (continuations joined, comments dropped) by stage name; the
    last stage, the image itself, is ""."""
    instructions, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            instructions.append(" ".join(current.split()))
            current = ""
    stages: dict[str, list[str]] = {}
    for instruction in filter(None, instructions):
        if instruction.startswith("FROM "):
            words = instruction.split()
            stage = stages.setdefault(words[3] if len(words) == 4 else "", [])
        elif stages:
            stage.append(instruction)
    return stages


def _module_file(module: str) -> Path | None:
    path = Path(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def _first_party_files(module: str) -> set[Path]:
    """The files of a module, its packages and every first-party module it imports, transitively
    (imports inside functions included: a lazy import fails as surely in the build)."""
    files: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:n]) for n in range(1, len(parts))]  # its packages
        file = _module_file(name)
        if file is None or file in files:
            continue
        files.add(file)
        for node in ast.walk(ast.parse((ROOT / file).read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return {file for file in files if file.parts[0] in {"shared", "services"}}


def test_the_build_context_is_the_package_sources_alone() -> None:
    """What changes between two builds with no change to the code stays out of the context:
    README.md (docs), .fleet-secret (made by `make up`), .venv, caches, test media."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    kept = {pattern[1:] for pattern in patterns if pattern.startswith("!")}
    assert kept == {"pyproject.toml", "requirements/", "shared/", "services/"}
    assert {"**/__pycache__", "**/.*"} <= set(patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_code_change_rebuilds_only_the_wheel_and_its_install(dockerfile: Path) -> None:
    """The runtime stage is built on the dependencies' stage (never a copy of the environment,
    ~1 GB per image per code change, that podman re-hashes on every build) and takes only the
    project's wheel from the stage that sees the code."""
    stages = _stages(dockerfile)
    assert "deps" in stages and "wheel" in stages
    copies_code = [
        name
        for name, instructions in stages.items()
        for instruction in instructions
        if instruction.split()[:2] in (["COPY", "shared"], ["COPY", "services"])
    ]
    assert set(copies_code) == {"wheel"}
    image = stages[""]
    from_other_stages = [i for i in image if i.startswith("COPY --from=")]
    assert "COPY --from=wheel /wheel /wheel" in from_other_stages
    assert not any("/opt/venv" in instruction for instruction in from_other_stages)
    assert dockerfile.read_text().splitlines().count("FROM deps") == 1  # the image's base


def test_the_model_stage_copies_every_module_it_imports() -> None:
    """The chunk worker's image converts the diarization models from a few copied modules (so a
    change elsewhere keeps that layer); a module they import and the stage lacks breaks the
    build (as shared/model_cache.py did)."""
    copied: set[Path] = set()
    for instruction in _stages(ROOT / "services/chunk_worker/Dockerfile")["models"]:
        words = instruction.split()
        if words[0] == "COPY":
            copied |= {Path(source) for source in words[1:-1]}
    needed = _first_party_files("shared.diarization.weights")
    assert Path("shared/model_cache.py") in needed
    assert needed <= copied, f"add {sorted(map(str, needed - copied))} to the models stage"


# ---- Kubernetes --------------------------------------------------------------------------------


def _docs(manifests: dict[Path, list[Doc]], folder: str) -> list[Doc]:
    return [
        doc
        for path, docs in manifests.items()
        if folder in path.parts
        for doc in docs
        if doc["kind"] != "Kustomization"
    ]


def test_every_manifest_parses_and_each_service_has_deployment_service_and_autoscaler() -> None:
    """The stateless services scale in the base; the orchestrator does only with PostgreSQL
    (overlays/postgres), so its autoscaler lives there."""
    manifests = load_k8s()
    assert any(path.parts[-2:] == ("gpu", "kustomization.yaml") for path in manifests)
    base = _docs(manifests, "base")
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in base}
    for name in ("orchestrator", "chunk-worker", "whisper"):
        for kind in ("Deployment", "Service", "ConfigMap"):
            assert (kind, name) in kinds
        assert ("NetworkPolicy", name) in kinds
    assert ("HorizontalPodAutoscaler", "chunk-worker") in kinds
    assert ("HorizontalPodAutoscaler", "whisper") in kinds
    assert ("HorizontalPodAutoscaler", "orchestrator") not in kinds
    services = {doc["metadata"]["name"]: doc["spec"] for doc in base if doc["kind"] == "Service"}
    # Headless, so DNS returns every ready pod and the clients spread the load themselves.
    assert services["chunk-worker"]["clusterIP"] == "None"
    assert services["whisper"]["clusterIP"] == "None"
    hpa = next(
        d
        for d in base
        if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "whisper"
    )
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "whisper_queue_depth"


def test_without_postgresql_one_orchestrator_keeps_its_jobs_on_a_volume_and_drains() -> None:
    """SQLite serves one orchestrator: one replica, replaced (not rolled) so two pods never
    share the file, on a persistent volume (the job table and queued uploads survive a
    rescheduled pod); SIGTERM: a pause until the Service stops routing, then time to hand
    running jobs back."""
    base = _docs(load_k8s(), "base")
    deployment = next(
        d for d in base if d["kind"] == "Deployment" and d["metadata"]["name"] == "orchestrator"
    )
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = volumes[next(name for name, path in mounts.items() if path == "/var/lib/whisperfleet")]
    claim = data["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in {(d["kind"], d["metadata"]["name"]) for d in base}
    dockerfile = (ROOT / "services/orchestrator/Dockerfile").read_text()
    assert "ORCHESTRATOR_DATABASE_URL=sqlite:////var/lib/whisperfleet/" in dockerfile
    config = next(d for d in base if d["kind"] == "ConfigMap" and d["metadata"]["name"] ==
                  "orchestrator")  # fmt: skip
    assert config["data"]["ORCHESTRATOR_UPLOAD_DIR"].startswith("/var/lib/whisperfleet/")
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 3
    # preStop, uvicorn's 5 s for requests in flight, then the hand-back
    assert pod["terminationGracePeriodSeconds"] >= int(pause[1]) + 5 + 20


def test_the_postgresql_overlay_requires_the_database_and_scales_the_orchestrator() -> None:
    manifests = load_k8s()
    folder = ROOT / K8S_DIR / "overlays" / "postgres"
    kustomization = manifests[folder / "kustomization.yaml"][0]
    assert "../../base" in kustomization["resources"]
    deleted = [load_yaml_text(p["patch"]) for p in kustomization["patches"] if "patch" in p]
    assert {"$patch": "delete", "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "orchestrator-data"}} in deleted  # fmt: skip
    overlay = _docs(manifests, "postgres")
    patch = next(d for d in overlay if d["kind"] == "Deployment")
    assert patch["spec"]["replicas"] >= 2
    assert patch["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    secret = env["ORCHESTRATOR_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret["name"] == "whisperfleet-database" and secret["optional"] is False
    volume = patch["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"] is None and "emptyDir" in volume
    hpa = next(d for d in overlay if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "orchestrator"
    assert hpa["spec"]["minReplicas"] >= 2


def load_yaml_text(text: str) -> Doc:
    loaded: Doc = yaml.safe_load(text)
    return loaded


def test_the_kubernetes_check_catches_a_typo_and_a_wrong_probe(tmp_path: Path) -> None:
    shutil.copytree(ROOT / K8S_DIR, tmp_path / K8S_DIR)
    worker = tmp_path / K8S_DIR / "base" / "chunk-worker.yaml"
    docs = list(yaml.safe_load_all(worker.read_text()))
    docs[0]["data"]["CHUNK_WORKER_WHISPER_URL"] = docs[0]["data"].pop("CHUNK_WORKER_WHISPER_URLS")
    container = docs[1]["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    worker.write_text(yaml.safe_dump_all(docs))
    problems = "\n".join(check_kubernetes(tmp_path).problems)
    assert "CHUNK_WORKER_WHISPER_URL is not a setting of ChunkWorkerSettings" in problems
    assert "readinessProbe path /health should be /readyz" in problems


def test_the_kubernetes_check_wants_the_fleet_secret_and_the_network_policies(
    tmp_path: Path,
) -> None:
    shutil.copytree(ROOT / K8S_DIR, tmp_path / K8S_DIR)
    base = tmp_path / K8S_DIR / "base"
    whisper = base / "whisper.yaml"
    docs = list(yaml.safe_load_all(whisper.read_text()))
    container = docs[1]["spec"]["template"]["spec"]["containers"][0]
    container["env"][0]["valueFrom"]["secretKeyRef"]["optional"] = True
    whisper.write_text(yaml.safe_dump_all(docs))
    policies = base / "network-policies.yaml"
    docs = list(yaml.safe_load_all(policies.read_text()))
    docs[2]["spec"]["ingress"].append({"ports": [{"port": "http"}]})  # whisper: open to all
    policies.write_text(
        yaml.safe_dump_all([d for d in docs if d["metadata"]["name"] != "chunk-worker"])
    )
    problems = "\n".join(check_kubernetes(tmp_path).problems)
    assert "container whisper: WHISPER_FLEET_SECRET must come from the Secret" in problems
    assert "no NetworkPolicy selects the chunk-worker pods" in problems
    assert "NetworkPolicy whisper admits more than the chunk-worker pods" in problems
