"""System readings for the metrics row: process memory, CPU, threads, and GPU when present."""

from __future__ import annotations

import os
from typing import Any

import psutil
import torch

_PROCESS = psutil.Process()
_PROCESS.cpu_percent(None)  # first call primes the counter; later calls measure since the last


def _load_average() -> Any:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def system_metrics(device: torch.device) -> dict[str, Any]:
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
        for key, reader in (("gpu_utilization", torch.cuda.utilization), ("gpu_temperature_c", torch.cuda.temperature),
                            ("gpu_power_w", lambda d: torch.cuda.power_draw(d) / 1000.0)):
            try:  # these need NVML; absent drivers or pynvml simply leave the key out
                row[key] = reader(device)
            except Exception:  # noqa: BLE001 - any NVML failure means "not available"
                pass
    return row
