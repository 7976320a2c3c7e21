"""Expand a sweep spec into its runs: grid x experiments x seeds, plus archetype twins.

Every expanded config is validated before anything runs. A run's identity is the hash of
its resolved config (``config_hash``), so a twin shared by several strategic runs, or two
experiments that resolve to the same config, is one run. Directory names add the parameters
that vary in the sweep, readably, in front of the hash.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from assist.api import config_hash
from assist.config import ConfigError, merge_dotted
from assist.strategies import ResolvedRun, strategy_keys
from assist.strategies.resolve import flat_default, flat_keys
from assist.validation import twin_config, validate_run
from assist.experiments.spec import SpecError, SweepSpec


@dataclass
class PlannedRun:
    run_id: str                    # config_hash: the run's identity
    name: str                      # directory name: readable parameters + run_id
    config: ResolvedRun
    role: str                      # "strategic" or "archetype"
    experiments: list[str] = field(default_factory=list)  # the experiments that asked for it
    twin_id: Optional[str] = None  # strategic runs: their archetype twin

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "experiments": self.experiments,
                "twin_id": self.twin_id, "strategy": self.config.strategy, "rng_seed": self.config.rng_seed}


MAX_PLANNED = 10_000   # runs of one sweep; a grid beyond this is a typo more often than a plan


def _product(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _variants(params: dict[str, Any]) -> list[dict[str, Any]]:
    """An experiment's parameters: list values are a grid, the rest fixed."""
    fixed = {k: v for k, v in params.items() if not isinstance(v, list)}
    grid = {k: v for k, v in params.items() if isinstance(v, list)}
    return [{**fixed, **point} for point in _product(grid)]


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; ``strategy_options.x`` sets one entry of the strategy_options dict."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge_dotted(merged, layer)
    return merged


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base config"


def expand(spec: SweepSpec, source: str = "spec") -> list[PlannedRun]:
    """All runs of the sweep in a stable order (each strategic run followed by its twin, if new)."""
    experiments = {name: params or {} for name, params in spec.experiments.items()} or {"": {}}
    seeds: list[Optional[int]] = list(spec.seeds) if spec.seeds is not None else [None]
    count = math.prod(len(v) for v in spec.grid.values()) * len(seeds) * sum(
        math.prod(len(v) for v in params.values() if isinstance(v, list)) for params in experiments.values())
    if count > MAX_PLANNED:   # counted before anything is expanded or validated
        raise SpecError(f"{source}: the grid expands to {count:,} runs (before twins), over the {MAX_PLANNED:,} "
                        "a sweep may plan; split it into several specs")
    runs: dict[str, PlannedRun] = {}

    def add(config: ResolvedRun, experiment: str, twin_id: Optional[str] = None) -> None:
        run_id = config_hash(config)
        role = "archetype" if config.strategy == "archetype" else "strategic"
        run = runs.setdefault(run_id, PlannedRun(run_id, "", config, role, twin_id=twin_id))
        if experiment and experiment not in run.experiments:
            run.experiments.append(experiment)

    problems: list[str] = []
    for experiment, params in experiments.items():
        for variant in _variants(params):
            for point in _product(spec.grid):
                for seed in seeds:
                    layers = [spec.base, point, variant] + ([{"rng_seed": seed}] if seed is not None else [])
                    try:
                        config = validate_run(_merge(*layers))
                    except ConfigError as error:
                        where = f"experiment {experiment!r}, " if experiment else ""
                        chosen = {**point, **variant, **({"rng_seed": seed} if seed is not None else {})}
                        problems.append(f"{source}: {where}run with {_describe(chosen)}: {error}")
                        continue
                    twin = twin_config(config) if spec.twins and config.strategy != "archetype" else None
                    add(config, experiment, None if twin is None else config_hash(twin))
                    if twin is not None:
                        add(twin, experiment)
    if problems:  # every bad run, one line each, before anything runs
        raise SpecError("\n".join(problems))
    planned = list(runs.values())
    varying = varying_keys([run.config for run in planned])
    for run in planned:
        run.name = readable_name(run.config, varying) + "-" + run.run_id
    return planned


# Keys already shown by the strategy label or the seed suffix.
_IMPLIED = {"strategy", "epoch_filtering", "batch_filtering", "rng_seed"}
_SHORT = {"learning_rate": "lr", "batch_size": "bs", "accumulation_batch_size": "acc", "weight_decay": "wd",
          "momentum": "mom", "epochs": "ep", "filter": "filter-", "soft_margin": "margin", "select_k": "k",
          "select_q": "q", "select_p": "p", "select_buckets": "buckets", "data_augmentation": "aug",
          "samples_per_class": "spc", "num_classes": "classes", "batch_accumulation": "accum",
          "train_eval_subset": "evalsub", "gamma": "gamma", "milestone_every": "every"}
_VALUE_ONLY = {"dataset", "model", "optimizer", "selector", "lr_scheduler", "device"}


def varying_keys(configs: list[ResolvedRun]) -> list[str]:
    """Config keys whose value differs between runs, in the flat order of config.yaml."""
    dumps = [c.flat(mode="json") for c in configs]
    keys = []
    for key in flat_keys():
        if key in _IMPLIED:
            continue
        if len({repr(d.get(key)) for d in dumps}) > 1:
            keys.append(key)
    return keys


def _part(key: str, value: Any) -> str:
    short = _SHORT.get(key, key)
    if key in _VALUE_ONLY:
        return str(value)
    if isinstance(value, bool):
        return short if value else f"no{short}"
    if isinstance(value, float):
        value = f"{value:g}"
    if isinstance(value, dict):
        value = "+".join(f"{k}{v}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, list):
        value = "_".join(str(v) for v in value)
    separator = "" if short.endswith("-") or key in _SHORT else "="
    return f"{short}{separator}{value}"


def readable_name(config: ResolvedRun, varying: list[str]) -> str:
    """E.g. ``lenet-batchwise-acc64-lr0.1-s0``: the strategy, the keys that vary in the sweep
    (strategy keys only where they differ from their default: a twin has none), the seed."""
    strategic = strategy_keys()
    shown = [k for k in varying if not (k in strategic and getattr(config, k) == flat_default(k))]
    first = [k for k in shown if k in _VALUE_ONLY and k not in strategic]  # dataset, model, ...
    parts = [_part(k, getattr(config, k)) for k in first] + [config.strategy]
    parts += [_part(k, getattr(config, k)) for k in shown if k not in first]
    parts.append(f"s{config.rng_seed}")
    text = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts))
    return text[:100].rstrip("-_")
