"""The sweep specification: one YAML file describing a whole experiment.

    name: mnist-epochwise-filtering         # optional, shown in logs
    base: {dataset: mnist, epochs: 5}       # config keys shared by every run
    grid: {model: [lenet, fcnet100]}        # cartesian product over these lists
    experiments:                            # optional named variants of the base
      epochwise: {epoch_filtering: true}
      batchwise: {batch_filtering: true, accumulation_batch_size: [64, 128]}  # lists: a grid
    seeds: [0, 1]
    twins: true                             # add each strategic run's archetype twin (default)
    slurm: {partition: gpu, time: "02:00:00", gpus: 1, cpus: 4, mem: 16G, array_parallelism: 8}

In ``grid`` and ``experiments`` a list means "one run per value"; a config value that is
itself a list (``num_classes: [0, 1]``) is written as a list of lists there. Keys may be
dotted (``strategy_options.ratio``) to set one entry of a dict-valued key.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assist.config import ConfigError, parse_override, read_yaml_file
from assist.strategies.resolve import flat_keys


EXECUTORS = ("local", "slurm", "submitit-local")


class SpecError(ConfigError):
    """The sweep spec is invalid; the message names the file, the key and the problem."""


class SlurmOptions(BaseModel):
    """Resources of each array task (one run per task)."""

    model_config = ConfigDict(extra="forbid")

    partition: Optional[str] = None
    time: Union[int, str] = 60              # minutes, or Slurm's [D-]HH:MM:SS
    gpus: int = Field(default=0, ge=0)      # per task (per process of a data-parallel run)
    cpus: int = Field(default=1, gt=0)      # per task (per process of a data-parallel run)
    # data-parallel processes per run, on one node: the job's tasks join one torch.distributed
    # group (docs/distributed.md); with gpus, one GPU per process
    processes_per_run: int = Field(default=1, gt=0)
    mem: Optional[str] = None               # e.g. "16G" (Slurm syntax); None: the cluster default
    array_parallelism: int = Field(default=16, gt=0)  # array tasks running at once
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    max_requeues: int = Field(default=3, ge=0)   # preemptions/timeouts a run may survive
    signal_delay_s: int = Field(default=120, gt=0)  # warning before the time limit, to requeue
    setup: list[str] = Field(default_factory=list)  # shell lines run first (module load, ...)
    additional: dict[str, Any] = Field(default_factory=dict)  # any other #SBATCH option

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: Union[int, str]) -> Union[int, str]:
        time_minutes(value)
        return value

    @field_validator("mem")
    @classmethod
    def _slurm_mem(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?B?", str(value).upper()):
            raise ValueError(f"{value!r} is not a Slurm memory size such as 4000M or 16G")
        return value


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Optional[str] = None
    description: Optional[str] = None
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    experiments: dict[str, Optional[dict[str, Any]]] = Field(default_factory=dict)
    seeds: Optional[list[int]] = None
    twins: bool = True
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)

    @field_validator("name")
    @classmethod
    def _a_plain_name(cls, value: Optional[str]) -> Optional[str]:
        """The name is the default sweep folder under runs/: one plain path component."""
        if value is not None and (not value.strip() or value.strip() in (".", "..") or "/" in value
                                  or "\\" in value or value.startswith("~")):
            raise ValueError(f"{value!r} is not a plain name (it names the sweep's folder under runs/)")
        return value


def time_minutes(value: Union[int, str]) -> int:
    """Slurm time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, rounded up."""
    if isinstance(value, bool):
        raise ValueError("must be minutes or [D-]HH:MM:SS")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive number of minutes")
        return value
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a Slurm time such as 90, 02:00:00 or 1-12:00:00")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:
        hours, minutes, seconds = a, b, c
    elif b is not None:
        hours, minutes, seconds = 0, a, b
    else:
        hours, minutes, seconds = 0, a, 0
    total = ((days or 0) * 24 + hours) * 60 + minutes + seconds / 60
    if total <= 0:
        raise ValueError("must be a positive duration")
    return math.ceil(total)


def _format_spec_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        if item["type"] == "extra_forbidden":
            parent = SlurmOptions if item["loc"][0] == "slurm" else SweepSpec
            valid = ", ".join(parent.model_fields)
            problems.append(f"unknown key {where!r}{_suggest(str(item['loc'][-1]), parent.model_fields)}; "
                            f"valid keys: {valid}")
        else:
            value = item.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(problems)


def _suggest(key: str, valid: Any) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_spec(data: Any, source: str = "spec") -> SweepSpec:
    """Validate a loaded mapping into a SweepSpec, checking every config key name."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: must be a mapping with keys base, grid, experiments, seeds, ...")
    try:
        spec = SweepSpec(**data)
    except ValidationError as error:
        raise SpecError(f"{source}: {_format_spec_error(error)}") from None
    sections = [("base", spec.base), ("grid", spec.grid)]
    sections += [(f"experiments.{name}", params or {}) for name, params in spec.experiments.items()]
    for where, mapping in sections:
        for key in mapping:
            check_key(key, f"{source}: {where}")
    for key, values in spec.grid.items():
        if not values:
            raise SpecError(f"{source}: grid.{key} is an empty list; give at least one value")
    for name, params in spec.experiments.items():
        for key, value in (params or {}).items():
            if isinstance(value, list) and not value:
                raise SpecError(f"{source}: experiments.{name}.{key} is an empty list; give at least one value")
    if spec.seeds is not None:
        if not spec.seeds:
            raise SpecError(f"{source}: seeds is an empty list; give at least one seed")
        if len(set(spec.seeds)) != len(spec.seeds):
            raise SpecError(f"{source}: seeds {spec.seeds} repeat a seed")
        for where, mapping in sections:
            if "rng_seed" in mapping:
                raise SpecError(f"{source}: {where} sets rng_seed and the spec also lists seeds; use one")
    for key in spec.grid:
        if any(_overrides(key, k) for k in spec.base):
            raise SpecError(f"{source}: {key!r} is set in both base and grid; keep it in one place")
        for name, params in spec.experiments.items():
            if any(_overrides(k, key) or _overrides(key, k) for k in params or {}):
                raise SpecError(f"{source}: experiments.{name} sets {key!r}, which the grid already varies; "
                                "move it into the experiments or out of the grid")
    return spec


def _root(key: str) -> str:
    return key.split(".", 1)[0]


def _overrides(later: str, earlier: str) -> bool:
    """Would setting ``later`` silently replace ``earlier``? (An entry ``strategy_options.x``
    only adds to a whole ``strategy_options`` set before it.)"""
    return later == earlier or ("." not in later and _root(earlier) == later)


def check_key(key: str, where: str) -> None:
    head = _root(key)
    keys = flat_keys()
    if head not in keys:
        raise SpecError(f"{where}: unknown config key {head!r}{_suggest(head, keys)}")
    if "." in key and head != "strategy_options":
        raise SpecError(f"{where}: dotted key {key!r} is only allowed under strategy_options")


def load_spec(path: Union[str, Path], overrides: Sequence[str] = (),
              seeds: Optional[Sequence[int]] = None) -> SweepSpec:
    """Read and validate a spec file; ``overrides`` (``key=value``) are set in its base and pin
    the key: a grid or experiment that varies it takes the given value only (``--set
    model=lenet`` runs a model grid's LeNet runs). ``seeds`` replace the spec's seeds."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {str(path)!r} does not exist")
    try:
        data = read_yaml_file(path, "sweep spec")
    except ConfigError as error:
        raise SpecError(str(error)) from None
    if overrides and isinstance(data, dict):
        base = dict(data.get("base") or {})
        grid = dict(data.get("grid") or {})
        experiments = {name: dict(params or {}) for name, params in (data.get("experiments") or {}).items()}
        for text in overrides:
            key, value = parse_override(text)
            base[key] = value
            for mapping in (grid, *experiments.values()):
                for other in [k for k in mapping if _overrides(key, k) or _overrides(k, key)]:
                    del mapping[other]
        data = {**data, "base": base, "grid": grid,
                **({"experiments": experiments} if "experiments" in data else {})}
    if seeds is not None and isinstance(data, dict):
        data = {**data, "seeds": list(seeds)}
    return parse_spec(data, source=str(path))
