"""System readings for the metrics row: process memory, CPU, threads, and GPU when present."""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Optional

import psutil
import torch

_PROCESS = psutil.Process()
_PROCESS.cpu_percent(None)  # first call primes the counter; later calls measure since the last


def _load_average() -> Any:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def system_metrics(device: torch.device, unavailable: Optional[set[str]] = None) -> dict[str, Any]:
    """This process's and machine's readings; on a CUDA device also the GPU's (the keys that
    cannot be read are added to ``unavailable`` and warned about once)."""
    info = _PROCESS.as_dict(["memory_info", "num_threads"])
    row: dict[str, Any] = {
        "process_rss_mb": info["memory_info"].rss / 2**20,
        "cpu_percent": _PROCESS.cpu_percent(None),
        "cpu_threads": info["num_threads"],
        "system_memory_available_mb": psutil.virtual_memory().available / 2**20,
        # the machine's run queue: above its core count, other work competed for the CPU
        "load_average_1m": _load_average(),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        row["gpu_memory_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        row["gpu_memory_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        row.update(gpu_readings(device, unavailable if unavailable is not None else set()))
    return row


# Readings that go through NVIDIA's management library (the ``gpu`` extra: nvidia-ml-py)
GPU_READERS: tuple[tuple[str, Callable[[torch.device], Any]], ...] = (
    ("gpu_utilization", torch.cuda.utilization),
    ("gpu_temperature_c", torch.cuda.temperature),
    ("gpu_power_w", lambda d: torch.cuda.power_draw(d) / 1000.0),
)


def gpu_readings(device: torch.device, unavailable: set[str]) -> dict[str, Any]:
    """The NVML readings that work; each one that fails is left out of the row and warned
    about once per ``unavailable`` set (the trainer keeps one per run)."""
    row: dict[str, Any] = {}
    for key, reader in GPU_READERS:
        try:
            row[key] = reader(device)
        except Exception as error:  # noqa: BLE001 - any NVML failure means "not available"
            if key not in unavailable:
                unavailable.add(key)
                warnings.warn(f"{key} is not recorded: it needs NVIDIA's management library "
                              f"(pip install 'assist-sampling[gpu]') and a driver ({type(error).__name__}: {error})",
                              stacklevel=2)
    return row
