"""Validation of a whole run, before anything runs: one function every entry point calls.

``assist train``, ``assist compare``, ``assist sweep`` (planning, so ``--dry-run`` finds every
bad run), :func:`assist.api.train` and the :class:`~assist.integration.Selector` all pass
their configuration through :func:`validate_run`. It checks, in order: the keys and their
types (:mod:`assist.config`); that the strategy exists; the strategy's own options, owned
by the strategy's schema, including keys set to no effect for it
(:mod:`assist.strategies.resolve`); that the model and data set names exist and the device
is usable. Checks that need the data (does the model take its image size?) run where the
data is loaded. Every failure is a :class:`~assist.config.ConfigError` of one line that
names the key.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

from assist.config import ConfigError, TrainConfig, config_default
from assist.strategies import STRATEGIES
from assist.strategies.resolve import ResolvedRun, resolve_run, twin_of

ConfigLike = Union[ResolvedRun, TrainConfig, Mapping[str, Any]]


def _max_loss(values: dict[str, Any]) -> dict[str, Any]:
    """The field's "max loss" baseline (DivBS's benchmark): the top 10% losses of raw batches
    of 10x the batch size, i.e. the thesis's top-k selector without a filter."""
    batch = int(values.get("batch_size") or config_default("batch_size"))
    return {"filter": "none", "selector": "top_k", "select_k": 0.1, "accumulation_batch_size": 10 * batch,
            **values, "strategy": "batchwise"}


# Named settings of registered strategies, under the names the field uses (``strategy=NAME``)
def _grad_norm_is(values: dict[str, Any]) -> dict[str, Any]:
    """The field's "grad norm IS" baseline (DivBS's benchmark): importance sampling by the
    gradient-norm bound from raw batches of 10x the batch size, on from the first step."""
    options = {"always_on": True, "presample": 10.0, **dict(values.get("strategy_options") or {})}
    return {**values, "strategy": "importance_sampling", "strategy_options": options}


PRESETS = {"max_loss": _max_loss, "grad_norm_is": _grad_norm_is}


def validate_run(config: ConfigLike) -> ResolvedRun:
    """The resolved run of a flat mapping of keys (``config`` itself when it is already one:
    a run is validated once). A preset name (``strategy=max_loss``) becomes its strategy's keys;
    keys given beside it win. A bare TrainConfig is the archetype run of its keys."""
    if isinstance(config, ResolvedRun):
        return config
    values = config.model_dump(exclude_unset=True) if isinstance(config, TrainConfig) else dict(config)
    name = values.get("strategy")
    preset = PRESETS.get(name)  # type: ignore[arg-type]
    if preset is not None:
        values = preset(values)
    elif name is not None and name not in STRATEGIES:
        raise ConfigError(f"strategy: unknown strategy {name!r}; available: "
                          f"{', '.join(STRATEGIES.names())}, and the presets {', '.join(PRESETS)}")
    run = resolve_run(values)
    _check_names(run.config)
    check_device(run.config.device)
    if run.config.compile:
        from assist.engine.runtime import compiler_problem

        problem = compiler_problem(run.config.device)
        if problem:
            raise ConfigError(f"compile: {problem}; leave compile off here")
    return run


def _check_names(config: TrainConfig) -> None:
    from assist.data.datasets import DATASETS
    from assist.models import MODELS

    if config.model not in MODELS:
        raise ConfigError(f"model: unknown model {config.model!r}; available: {', '.join(MODELS.names())}")
    if config.dataset not in DATASETS:
        raise ConfigError(f"dataset: unknown data set {config.dataset!r}; available: {', '.join(DATASETS.names())}")


TRAINING_DEVICES = ("cpu", "cuda", "mps")


def check_device(device: str) -> None:
    """A device ASSIST can train on, and that this machine has: cpu, cuda[:N] with N among its
    GPUs, or mps. ``meta``, ``xla`` and the like are refused before anything is written."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: {device!r} is not a device name (use cpu or cuda)") from None
    if parsed.type not in TRAINING_DEVICES:
        raise ConfigError(f"device: {device!r} cannot train a model here; use cpu, cuda, cuda:N or mps")
    if parsed.type == "cpu" and parsed.index not in (None, 0):
        raise ConfigError(f"device: {device!r} has no meaning (there is one CPU device); use cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} was asked for but CUDA is not available here")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {device!r} names GPU {parsed.index}, but this machine has "
                              f"{torch.cuda.device_count()}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: {device!r} was asked for but MPS is not available here")


def twin_config(run: ResolvedRun) -> ResolvedRun:
    """The archetype twin: identical parameters and seed, every strategy key at its default."""
    return twin_of(run)
