"""Experiments: sweep specs with archetype twins, resumable runs, local and Slurm executors.

Names are imported lazily so that ``assist --help`` does not pay for importing torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PlannedRun": "plan", "expand": "plan",
    "Outcome": "runner", "RunTask": "runner", "run_task": "runner",
    "SlurmOptions": "spec", "SpecError": "spec", "SweepSpec": "spec", "load_spec": "spec", "parse_spec": "spec",
    "RunState": "store", "SweepDir": "store",
    "SweepPlan": "sweep", "SweepReport": "sweep", "describe_plan": "sweep", "plan_sweep": "sweep",
    "run_sweep": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assist.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"assist.experiments.{_EXPORTS[name]}"), name)
