"""Check the Compose files and Kubernetes manifests against the services, with no container engine.

    python scripts/check_compose.py [--root DIR]     # `make check-compose`; exit 1 on a problem

docker-compose.yml is checked alone and merged with docker-compose.gpu.yml (merged the way
Compose merges the keys these files use). For every service:

- its package is the folder of its `build.dockerfile` (services/<package>/Dockerfile*), which
  names the Settings class and the app it runs;
- every environment key is a field of that Settings class (a typo is an error, with the closest
  name), every field is listed (reachable by environment variable), a field with no default gets
  a value, and the environment with every `${VAR:-default}` at its default passes validation;
- a tunable's default (`NAME: ${NAME:-default}`) equals the Settings default unless
  DEFAULT_OVERRIDES gives the reason it differs;
- only the orchestrator publishes a port; published and exposed container ports, healthcheck
  URLs and service URLs in settings (http://chunk_worker:8001) match the ports the services
  listen on; healthchecks use the CMD-SHELL form and a GET route the app has (/readyz, /healthz);
- `depends_on` waits for `service_healthy` of a service that has a healthcheck; every service
  joins an `internal: true` network; named volumes are declared; the model cache is a volume;
- the GPU overlay touches only the model server, and only its image, Dockerfile, device, compute
  type, batching and GPU reservation.

Kubernetes (deploy/k8s): every manifest parses; each container's environment (inline or from a
ConfigMap) names only Settings fields; probes and ports match the app; kustomizations list files
that exist; every service takes its fleet secret from the `whisperfleet-fleet` Secret (not
optional), and NetworkPolicies admit only the orchestrator's pods to the chunk workers and only
the workers' pods to the model server.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
BASE_FILE = "docker-compose.yml"
GPU_FILE = "docker-compose.gpu.yml"
K8S_DIR = "deploy/k8s"

PUBLIC_PACKAGE = "orchestrator"
MODEL_PACKAGE = "whisper_gpu"
HEALTH_PATHS = frozenset({"/readyz", "/healthz"})

DEFAULT_OVERRIDES: dict[str, str] = {
    "ORCHESTRATOR_WORKER_URLS": "the workers' service name instead of loopback",
    "CHUNK_WORKER_WHISPER_URLS": "the model server's service name instead of loopback",
    "WHISPER_DEVICE": "the CPU image has no CUDA, so `auto` would only ever mean cpu",
    "WHISPER_COMPUTE_TYPE": "float16 on the GPU overlay",
    "WHISPER_MAX_BATCH_SIZE": "sized for a GPU on the GPU overlay",
    "WHISPER_MAX_BATCH_WAIT_MS": "sized for a GPU on the GPU overlay",
    "ORCHESTRATOR_DATABASE_URL": "the job table on the `jobs` volume, not in the home directory",
}
"""Tunables whose compose default may differ from the Settings default, and why."""

FOLLOWS: dict[str, str] = {
    "ORCHESTRATOR_MODEL_NAME": "WHISPER_MODEL",  # /v1/models lists what the model server runs
    # The workers' own address rule: the orchestrator's networks, set once.
    "CHUNK_WORKER_ALLOWED_MEDIA_NETWORKS": "ORCHESTRATOR_ALLOWED_MEDIA_NETWORKS",
}
"""Settings tuned by another service's variable, so that one variable sets both."""

GPU_OVERLAY_ENV = frozenset(
    {
        "WHISPER_DEVICE",
        "WHISPER_COMPUTE_TYPE",
        "WHISPER_MAX_BATCH_SIZE",
        "WHISPER_MAX_BATCH_WAIT_MS",
    }
)
GPU_OVERLAY_KEYS = frozenset({"build", "image", "environment", "deploy"})

SERVICE_URL_FIELDS: dict[str, list[tuple[str, str]]] = {
    "orchestrator": [("worker_urls", "chunk_worker")],
    "chunk_worker": [("whisper_urls", MODEL_PACKAGE), ("orchestrator_urls", PUBLIC_PACKAGE)],
}
"""Package -> [(its Settings field of peer base URLs, the package those URLs must reach)]."""

K8S_CONTAINERS: dict[str, str] = {
    "orchestrator": "orchestrator",
    "chunk-worker": "chunk_worker",
    "whisper": MODEL_PACKAGE,
}
"""Kubernetes container name -> package."""

K8S_FLEET_SECRET = "whisperfleet-fleet"
"""The Secret every Deployment takes its `*_FLEET_SECRET` from."""

K8S_CALLERS: dict[str, str] = {"chunk-worker": "orchestrator", "whisper": "chunk-worker"}
"""Internal Deployment -> the only Deployment whose pods may connect to it (NetworkPolicy)."""
K8S_NAME_LABEL = "app.kubernetes.io/name"


# ---- the services, as the code defines them --------------------------------------------------


@dataclass(frozen=True)
class ServiceCode:
    package: str
    settings_cls: type[BaseSettings]
    app_factory: Callable[[], FastAPI]

    @property
    def prefix(self) -> str:
        return str(self.settings_cls.model_config.get("env_prefix", ""))

    def env_name(self, field_name: str) -> str:
        return f"{self.prefix}{field_name}".upper()

    @property
    def fields_by_env(self) -> dict[str, str]:
        return {self.env_name(name): name for name in self.settings_cls.model_fields}


def _orchestrator() -> ServiceCode:
    from services.orchestrator.app import create_app
    from services.orchestrator.config import OrchestratorSettings

    return ServiceCode("orchestrator", OrchestratorSettings, lambda: create_app())


def _chunk_worker() -> ServiceCode:
    from services.chunk_worker.app import create_app
    from services.chunk_worker.config import ChunkWorkerSettings

    return ServiceCode("chunk_worker", ChunkWorkerSettings, lambda: create_app())


def _whisper() -> ServiceCode:
    from services.whisper_gpu.app import create_app
    from services.whisper_gpu.config import WhisperSettings

    return ServiceCode(MODEL_PACKAGE, WhisperSettings, lambda: create_app())


SERVICES: dict[str, Callable[[], ServiceCode]] = {
    "orchestrator": _orchestrator,
    "chunk_worker": _chunk_worker,
    MODEL_PACKAGE: _whisper,
}


@cache
def service_code(package: str) -> ServiceCode | None:
    factory = SERVICES.get(package)
    return factory() if factory else None


@cache
def get_routes(package: str) -> frozenset[str]:
    """Paths the app answers with GET (building the app runs no lifespan: no model is loaded;
    its start-up warnings, such as a missing fleet secret, are about this shell, not the files)."""
    code = service_code(package)
    if code is None:
        return frozenset()
    logging.disable(logging.WARNING)
    try:
        app = code.app_factory()
    finally:
        logging.disable(logging.NOTSET)
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return frozenset(path for path, methods in paths.items() if "get" in methods)


@contextlib.contextmanager
def _only_environment(prefix: str, values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with this prefix's variables replaced by `values`, restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith(prefix.upper())}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)


def load_settings(code: ServiceCode, env: Mapping[str, str]) -> BaseSettings:
    """The service's Settings exactly as the service would read them from `env`."""
    with _only_environment(code.prefix, env):
        return code.settings_cls()


# ---- Compose: interpolation and merging --------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_TUNABLE = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):?-(?P<default>[^}]*)\}$")


@dataclass
class Interpolator:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`.

    Not nested (`${A:-${B}}`): these files do not use it.
    """

    env: Mapping[str, str]
    required: set[str] = field(default_factory=set)
    """Variables written `${VAR:?...}` that `env` does not set (Compose would refuse to start)."""

    def string(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match["escaped"]:
                return "$"
            name = match["braced"] or match["named"]
            value = self.env.get(name)
            op, arg = match["op"] or "", match["arg"] or ""
            present = value is not None and (value != "" or not op.startswith(":"))
            if op.endswith("-"):
                return value if present and value is not None else arg
            if op.endswith("+"):
                return arg if present else ""
            if op.endswith("?") and not present:
                self.required.add(name)
            return value or ""

        return _VARIABLE.sub(replace, text)

    def document(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.string(node)
        if isinstance(node, dict):
            return {key: self.document(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.document(item) for item in node]
        return node


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pairs(raw: Any) -> dict[str, str | None]:
    """`environment` or `labels`, list or mapping, as a mapping; None: no value given."""
    if not raw:
        return {}
    if isinstance(raw, list):
        split = [str(item).split("=", 1) for item in raw]
        return {pair[0]: pair[1] if len(pair) == 2 else None for pair in split}
    return {str(key): _scalar(value) for key, value in raw.items()}


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment; None: passed through from the shell when set there, else unset."""
    return _pairs(service.get("environment"))


def _as_mapping(value: Any) -> dict[str, Any]:
    """`depends_on`, `networks` (list or mapping) and `build` (string or mapping) as a mapping."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {"context": value}
    if isinstance(value, list):
        return {str(item): None for item in value}
    return dict(value)


_APPENDED_SEQUENCES = frozenset(
    {"ports", "expose", "cap_add", "cap_drop", "security_opt", "dns", "tmpfs", "devices"}
)


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key in _APPENDED_SEQUENCES and isinstance(value, list):
                old = merged.get(key) or []
                merged[key] = [*old, *(item for item in value if item not in old)]
            else:
                merged[key] = _deep_merge(merged.get(key), value)
        return merged
    return override


def _volume_target(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("target", ""))
    parts = str(volume).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_service(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """One service of an override file applied to the base, by Compose's merge rules."""
    merged = dict(base)
    for key, value in override.items():
        if key in _APPENDED_SEQUENCES:
            merged[key] = _deep_merge({key: base.get(key)}, {key: value})[key]
        elif key in ("environment", "labels"):
            merged[key] = {**_pairs(base.get(key)), **_pairs(value)}
        elif key in ("build", "depends_on", "networks"):
            merged[key] = {**_as_mapping(base.get(key)), **_as_mapping(value)}
        elif key == "volumes":
            replaced = {_volume_target(volume) for volume in value}
            kept = [v for v in base.get(key) or [] if _volume_target(v) not in replaced]
            merged[key] = [*kept, *value]
        else:
            merged[key] = _deep_merge(base.get(key), value)
    return merged


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`docker compose -f base -f override`: services merged one by one, the rest deeply."""
    merged = dict(base)
    for key, value in override.items():
        if key == "services":
            services = dict(base.get("services") or {})
            for name, service in (value or {}).items():
                services[name] = merge_service(services.get(name) or {}, service or {})
            merged["services"] = services
        else:
            merged[key] = _deep_merge(base.get(key), value)
    return merged


# ---- Compose: the checks ---------------------------------------------------------------------


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Report) -> None:
        self.problems += other.problems
        self.notes += other.notes

    @property
    def ok(self) -> bool:
        return not self.problems


def package_of(service: Mapping[str, Any]) -> str | None:
    """`services/<package>/Dockerfile*` -> package."""
    dockerfile = str(_as_mapping(service.get("build")).get("dockerfile") or "")
    parts = Path(dockerfile).parts
    if len(parts) == 3 and parts[0] == "services" and parts[2].startswith("Dockerfile"):
        return parts[1]
    return None


def _suggest(name: str, candidates: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _container_port(mapping: Any) -> int | None:
    if isinstance(mapping, dict):
        target = mapping.get("target")
        return int(target) if target is not None else None
    text = str(mapping).split("/", 1)[0]
    try:
        return int(text.rsplit(":", 1)[-1])
    except ValueError:
        return None


_HEALTH_URL = re.compile(
    r"https?://(?:127\.0\.0\.1|localhost|\[::1\]):(?P<port>\d+)(?P<path>/[^\s'\"]*)"
)


@dataclass
class _Service:
    name: str
    spec: dict[str, Any]
    code: ServiceCode
    settings: BaseModel | None


def check_compose(raw: Mapping[str, Any], label: str, root: Path = ROOT) -> Report:
    """Every check of one compose document (a single file or a merge), resolved at defaults."""
    report = Report()
    interpolator = Interpolator(env={})
    doc: dict[str, Any] = interpolator.document(dict(raw))
    raw_services: dict[str, Any] = raw.get("services") or {}
    services: dict[str, Any] = doc.get("services") or {}
    if not services:
        report.problems.append(f"{label}: no services")
        return report

    def problem(service: str, text: str) -> None:
        report.problems.append(f"{label}: service {service}: {text}")

    resolved: dict[str, _Service] = {}
    for name, spec in services.items():
        package = package_of(spec)
        code = service_code(package) if package else None
        if code is None:
            problem(
                name,
                "build.dockerfile must be services/<package>/Dockerfile* of a service "
                f"({', '.join(SERVICES)})",
            )
            continue
        dockerfile = _as_mapping(spec.get("build")).get("dockerfile")
        if not (root / str(dockerfile)).is_file():
            problem(name, f"build.dockerfile {dockerfile} does not exist")
        settings = check_environment(
            name, environment(raw_services.get(name) or {}), environment(spec), code, problem
        )
        resolved[name] = _Service(name, spec, code, settings)

    for service in resolved.values():
        _check_ports_and_health(service, resolved, problem)
    _check_topology(doc, resolved, problem)
    for variable in sorted(interpolator.required):
        report.notes.append(f"{label}: needs {variable} from the environment (${{...:?}})")
    return report


def check_environment(
    name: str,
    raw_env: Mapping[str, str | None],
    env: Mapping[str, str | None],
    code: ServiceCode,
    problem: Callable[[str, str], None],
) -> BaseModel | None:
    fields = code.fields_by_env
    cls_name = code.settings_cls.__name__
    for key in env:
        if key not in fields:
            problem(
                name, f"environment {key} is not a setting of {cls_name}{_suggest(key, fields)}"
            )
    for env_name, field_name in fields.items():
        info = code.settings_cls.model_fields[field_name]
        if env_name not in env:
            problem(name, f"setting {field_name} is not reachable: add {env_name} to environment")
        elif info.is_required() and env[env_name] is None:
            problem(name, f"{env_name} has no default in {cls_name} and must be given a value")
    values = {k: v for k, v in env.items() if v is not None and k in fields}
    try:
        settings = load_settings(code, values)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            problem(
                name,
                f"{code.env_name(where)}={values.get(code.env_name(where))!r} is "
                f"invalid: {error['msg']}",
            )
        return None
    for key, raw_value in raw_env.items():
        match = _TUNABLE.match(raw_value or "")
        if not match or key not in fields or key in DEFAULT_OVERRIDES:
            continue
        if match["name"] != key and FOLLOWS.get(key) != match["name"]:
            problem(name, f"{key} is tuned by ${{{match['name']}}}: use the same name")
            continue
        info = code.settings_cls.model_fields[fields[key]]
        expected = info.get_default(call_default_factory=True)
        actual = getattr(settings, fields[key])
        if actual != expected:
            problem(
                name,
                f"{key} defaults to {actual!r} here but {expected!r} in {cls_name}: "
                "change one, or list it in DEFAULT_OVERRIDES with the reason",
            )
    return settings


def _check_ports_and_health(
    service: _Service, services: Mapping[str, _Service], problem: Callable[[str, str], None]
) -> None:
    name, spec, settings = service.name, service.spec, service.settings
    if settings is None:
        return
    port = int(getattr(settings, "port"))  # noqa: B009 - every Settings class has a port
    if spec.get("ports") and service.code.package != PUBLIC_PACKAGE:
        problem(name, f"publishes ports; only the {PUBLIC_PACKAGE} may be reachable from outside")
    for mapping in spec.get("ports") or []:
        if _container_port(mapping) != port:
            problem(name, f"port mapping {mapping!r} does not target the service's port {port}")
    for exposed in spec.get("expose") or []:
        if _container_port(exposed) != port:
            problem(name, f"expose {exposed!r} is not the service's port {port}")

    health = spec.get("healthcheck") or {}
    test = health.get("test")
    if health.get("disable") or not test:
        problem(name, "has no healthcheck")
    elif not (isinstance(test, list) and test and test[0] == "CMD-SHELL"):
        problem(name, 'healthcheck test must be ["CMD-SHELL", "..."] (podman splits CMD on spaces)')
    else:
        urls = list(_HEALTH_URL.finditer(" ".join(str(part) for part in test[1:])))
        routes = get_routes(service.code.package)
        if not urls:
            problem(name, "healthcheck does not call http://127.0.0.1:<port>/readyz")
        for url in urls:
            if int(url["port"]) != port:
                problem(
                    name, f"healthcheck calls port {url['port']}; the service listens on {port}"
                )
            if url["path"] not in HEALTH_PATHS or url["path"] not in routes:
                problem(
                    name,
                    f"healthcheck path {url['path']} is not a health route of the app "
                    f"(it has {', '.join(sorted(HEALTH_PATHS & routes))})",
                )

    for field_name, target_package in SERVICE_URL_FIELDS.get(service.code.package, []):
        _check_peer_urls(service, services, field_name, target_package, problem)


def _check_peer_urls(
    service: _Service,
    services: Mapping[str, _Service],
    field_name: str,
    target_package: str,
    problem: Callable[[str, str], None],
) -> None:
    name, settings = service.name, service.settings
    for url in getattr(settings, field_name):
        parts = urlsplit(url)
        host = parts.hostname or ""
        if "." in host or ":" in host or host == "localhost":
            continue  # an address outside this file
        target = services.get(host)
        if target is None:
            problem(
                name,
                f"{service.code.env_name(field_name)} names {host!r}, which is not a "
                f"service here ({', '.join(services)})",
            )
            continue
        if target.code.package != target_package:
            problem(
                name,
                f"{service.code.env_name(field_name)} points at {host} "
                f"({target.code.package}), not at a {target_package}",
            )
        target_port = int(getattr(target.settings, "port", -1))
        if parts.port != target_port:
            problem(
                name,
                f"{service.code.env_name(field_name)} uses port {parts.port} but {host} "
                f"listens on {target_port}",
            )


def _check_topology(
    doc: Mapping[str, Any], services: Mapping[str, _Service], problem: Callable[[str, str], None]
) -> None:
    networks: dict[str, Any] = _as_mapping(doc.get("networks"))
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal") is True}
    volumes: dict[str, Any] = _as_mapping(doc.get("volumes"))
    if not internal:
        problem("*", "no network is `internal: true` for service-to-service traffic")
    for name, service in services.items():
        spec = service.spec
        joined = set(_as_mapping(spec.get("networks")))
        for network in joined - set(networks):
            problem(name, f"joins network {network}, which is not declared")
        if internal and not joined & internal:
            problem(name, f"is on no internal network ({', '.join(sorted(internal))})")
        for dependency, condition in _as_mapping(spec.get("depends_on")).items():
            wanted = (condition or {}).get("condition")
            if dependency not in services:
                problem(name, f"depends on {dependency}, which is not a service here")
            elif wanted != "service_healthy":
                problem(name, f"depends_on {dependency} must use condition: service_healthy")
        replicas = (spec.get("deploy") or {}).get("replicas")
        if replicas is not None and not str(replicas).isdigit():
            problem(name, f"deploy.replicas {replicas!r} is not a whole number")
        for volume in spec.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problem(name, f"volume {source} is not declared under top-level volumes")
        if service.code.package == MODEL_PACKAGE and service.settings is not None:
            cache_dir = str(getattr(service.settings, "model_cache_dir"))  # noqa: B009
            if cache_dir not in {_volume_target(volume) for volume in spec.get("volumes") or []}:
                problem(
                    name,
                    f"the model cache {cache_dir} is not a volume: every start would "
                    "download the model again",
                )


def check_gpu_overlay(
    base: Mapping[str, Any], overlay: Mapping[str, Any], label: str = GPU_FILE
) -> Report:
    """The overlay switches the model server to CUDA and touches nothing else."""
    report = Report()
    problems = report.problems
    for key in overlay:
        if key != "services":
            problems.append(
                f"{label}: top-level {key!r}: the overlay changes only the model server"
            )
    model_services = [
        name
        for name, spec in (base.get("services") or {}).items()
        if package_of(spec) == MODEL_PACKAGE
    ]
    for name, spec in (overlay.get("services") or {}).items():
        if name not in model_services:
            problems.append(f"{label}: service {name}: only the model server may change")
            continue
        spec = spec or {}
        for key in set(spec) - GPU_OVERLAY_KEYS:
            problems.append(
                f"{label}: {name}.{key}: not a GPU setting (allowed: "
                f"{', '.join(sorted(GPU_OVERLAY_KEYS))})"
            )
        build = _as_mapping(spec.get("build"))
        if build != {"dockerfile": f"services/{MODEL_PACKAGE}/Dockerfile.cuda"}:
            problems.append(
                f"{label}: {name}.build must set only dockerfile, to "
                f"services/{MODEL_PACKAGE}/Dockerfile.cuda"
            )
        for key in set(environment(spec)) - GPU_OVERLAY_ENV:
            problems.append(f"{label}: {name}.environment.{key}: not a GPU setting")
        deploy = spec.get("deploy") or {}
        resources = deploy.get("resources") or {}
        reservations = resources.get("reservations") or {}
        if (
            set(deploy) - {"resources"}
            or set(resources) - {"reservations"}
            or (set(reservations) - {"devices"})
        ):
            problems.append(f"{label}: {name}.deploy may only reserve GPU devices")
        devices = reservations.get("devices") or []
        if not any("gpu" in (device.get("capabilities") or []) for device in devices):
            problems.append(f"{label}: {name} reserves no device with capabilities [gpu]")

    merged = Interpolator(env={}).document(merge(base, overlay))
    for name in model_services:
        env = environment(merged["services"][name])
        if env.get("WHISPER_DEVICE") != "cuda" or env.get("WHISPER_COMPUTE_TYPE") != "float16":
            problems.append(
                f"{label}: {name} must run with WHISPER_DEVICE=cuda and "
                "WHISPER_COMPUTE_TYPE=float16"
            )
    return report


def check(base: Mapping[str, Any], overlay: Mapping[str, Any], root: Path = ROOT) -> Report:
    """Both compose files: the base alone, the overlay's scope, and the merge of the two."""
    report = check_compose(base, BASE_FILE, root)
    report.extend(check_gpu_overlay(base, overlay))
    report.extend(check_compose(merge(base, overlay), f"{BASE_FILE} + {GPU_FILE}", root))
    return report


# ---- Kubernetes --------------------------------------------------------------------------------


def load_k8s(root: Path = ROOT) -> dict[Path, list[dict[str, Any]]]:
    """Every manifest under deploy/k8s, parsed (a YAML error propagates)."""
    found: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted((root / K8S_DIR).rglob("*.yaml")):
        found[path] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _probe(container: Mapping[str, Any], kind: str) -> tuple[Any, str | None]:
    action = (container.get(kind) or {}).get("httpGet") or {}
    return action.get("port"), action.get("path")


def check_kubernetes(root: Path = ROOT) -> Report:
    report = Report()
    manifests = load_k8s(root)
    if not manifests:
        report.problems.append(f"{K8S_DIR}: no manifests")
        return report
    docs = [(path, doc) for path, found in manifests.items() for doc in found]
    config_maps = {
        doc["metadata"]["name"]: doc.get("data") or {}
        for _, doc in docs
        if doc.get("kind") == "ConfigMap"
    }
    _check_network_policies([doc for _, doc in docs], report)
    for path, doc in docs:
        rel = path.relative_to(root)
        if doc.get("kind") == "Kustomization" or path.name == "kustomization.yaml":
            listed = [
                *(doc.get("resources") or []),
                *(patch.get("path") for patch in doc.get("patches") or [] if patch.get("path")),
            ]
            for entry in listed:
                if not (path.parent / entry).exists():
                    report.problems.append(f"{rel}: lists {entry}, which does not exist")
            continue
        if doc.get("kind") != "Deployment":
            continue
        containers = (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or []
        for container in containers:
            package = K8S_CONTAINERS.get(container.get("name", ""))
            code = service_code(package) if package else None
            if code is None:
                report.problems.append(
                    f"{rel}: container {container.get('name')!r} is not a "
                    f"service ({', '.join(K8S_CONTAINERS)})"
                )
                continue
            _check_k8s_container(rel, container, code, config_maps, report)
    return report


def _check_k8s_container(
    rel: Path,
    container: Mapping[str, Any],
    code: ServiceCode,
    config_maps: Mapping[str, Mapping[str, Any]],
    report: Report,
) -> None:
    where = f"{rel}: container {container['name']}"
    fields = code.fields_by_env
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = (source.get("configMapRef") or {}).get("name")
        if ref is not None:
            env.update({key: str(value) for key, value in config_maps.get(ref, {}).items()})
    for item in container.get("env") or []:
        if "valueFrom" in item and item["name"] not in fields:
            continue  # a downward-API input for $(NAME) expansion, e.g. the pod's own IP
        env[item["name"]] = str(item.get("value", ""))
    for key in env:
        if key not in fields:
            report.problems.append(
                f"{where}: {key} is not a setting of "
                f"{code.settings_cls.__name__}{_suggest(key, fields)}"
            )
    if "image" in container:  # a full container, not a patch
        _check_fleet_secret(where, container, code, report)
    port = int(code.settings_cls.model_fields["port"].get_default())
    port = int(env.get(code.env_name("port"), port))
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if ports and port not in ports.values():
        report.problems.append(f"{where}: containerPort {list(ports.values())} is not {port}")
    routes = get_routes(code.package)
    for kind, wanted in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe_port, path = _probe(container, kind)
        if path is None:
            if "image" in container:  # a full container, not a patch
                report.problems.append(f"{where}: no {kind} (httpGet {wanted})")
            continue
        if path != wanted or path not in routes:
            report.problems.append(f"{where}: {kind} path {path} should be {wanted}")
        if probe_port not in (port, *(name for name in ports if name)):
            report.problems.append(f"{where}: {kind} port {probe_port} is not {port}")


def _check_fleet_secret(
    where: str, container: Mapping[str, Any], code: ServiceCode, report: Report
) -> None:
    name = code.env_name("fleet_secret")
    items = [item for item in container.get("env") or [] if item.get("name") == name]
    ref = ((items[0].get("valueFrom") or {}).get("secretKeyRef") or {}) if items else {}
    if ref.get("name") != K8S_FLEET_SECRET or ref.get("optional"):
        report.problems.append(
            f"{where}: {name} must come from the Secret {K8S_FLEET_SECRET} (secretKeyRef, not "
            "optional): without it the service refuses every internal call"
        )


def _check_network_policies(docs: list[dict[str, Any]], report: Report) -> None:
    policies = [doc for doc in docs if doc.get("kind") == "NetworkPolicy"]
    for target, caller in K8S_CALLERS.items():
        selecting = [
            policy
            for policy in policies
            if ((policy.get("spec") or {}).get("podSelector") or {}).get("matchLabels")
            == {K8S_NAME_LABEL: target}
        ]
        if not selecting:
            report.problems.append(
                f"{K8S_DIR}: no NetworkPolicy selects the {target} pods: only the {caller} "
                "pods may connect to them"
            )
        for policy in selecting:
            spec = policy.get("spec") or {}
            name = (policy.get("metadata") or {}).get("name")
            peers = [peer for rule in spec.get("ingress") or [] for peer in rule.get("from") or []]
            open_rule = any(not rule.get("from") for rule in spec.get("ingress") or [])
            allowed = {"podSelector": {"matchLabels": {K8S_NAME_LABEL: caller}}}
            if (
                "Ingress" not in (spec.get("policyTypes") or [])
                or open_rule
                or any(peer != allowed for peer in peers)
            ):
                report.problems.append(
                    f"{K8S_DIR}: NetworkPolicy {name} admits more than the {caller} pods to "
                    f"the {target} pods"
                )


# ---- command line --------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return loaded


def run(root: Path = ROOT) -> Report:
    report = check(load_yaml(root / BASE_FILE), load_yaml(root / GPU_FILE), root)
    report.extend(check_kubernetes(root))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    report = run(args.root)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    if report.ok:
        print(f"ok: {BASE_FILE}, {GPU_FILE} (and their merge) and {K8S_DIR} match the services")
        return 0
    print(f"{len(report.problems)} problem(s)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
