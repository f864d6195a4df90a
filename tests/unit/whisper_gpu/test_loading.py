"""Placement: replicas, threads and batch size from the machine's CPUs (or a GPU)."""

from __future__ import annotations

from services.whisper_gpu.config import WhisperSettings
from services.whisper_gpu.loading import choose_placement


def test_auto_placement_uses_a_replica_per_core_on_cpu_and_one_on_cuda() -> None:
    cpu = choose_placement(WhisperSettings(device="cpu"), cores=2)
    assert (cpu.compute_type, cpu.replicas, cpu.threads_per_replica) == ("int8", 2, 1)
    assert cpu.max_batch_size == 1
    big = choose_placement(WhisperSettings(device="cpu"), cores=16)
    assert (big.replicas, big.threads_per_replica) == (4, 4)
    gpu = choose_placement(WhisperSettings(device="cuda"), cores=16)
    assert (gpu.compute_type, gpu.replicas, gpu.max_batch_size) == ("float16", 1, 16)
    pinned = choose_placement(WhisperSettings(device="cpu", num_workers=1, cpu_threads=3), 8)
    assert (pinned.replicas, pinned.threads_per_replica) == (1, 3)


def test_settings_override_the_batch_size_on_either_device() -> None:
    for device in ("cpu", "cuda"):
        settings = WhisperSettings(device=device, max_batch_size=3)
        assert choose_placement(settings, cores=2).max_batch_size == 3
