"""What each strategy takes from the run configuration: its typed schema of options.

A strategy declares the config keys it reads (``Params``): flat keys of the thesis
(``filter``, ``select_k``, ``accumulation_batch_size`` ...), whose types and defaults stay
defined once in :class:`~assist.config.TrainConfig`, and, for the peer methods, a nested
``strategy_options`` model. Everything else follows from these declarations
(docs/architecture.md, "Options"):

* :func:`strategy_keys`: every key some strategy takes, the keys that make a run strategic
  (twins reset them, reports label runs by them);
* :func:`strategy_params`: the options of one run, refusing a strategy key that has no
  effect for the chosen strategy, with one line naming the key and what the strategy takes.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from assist.config import ConfigError, TrainConfig, at_default, did_you_mean, format_validation_error

#: keys that choose the strategy itself rather than configure one
SELECTOR_KEYS = ("strategy", "epoch_filtering", "batch_filtering")

P = TypeVar("P", bound="StrategyParams")


class StrategyOptions(BaseModel):
    """Base of a strategy's ``strategy_options``: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategyParams(BaseModel):
    """Base of a strategy's schema: the config keys it takes, validated together."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def params_schema(name: str, keys: Iterable[str] = (), *, base: type[StrategyParams] = StrategyParams,
                  options: Optional[type[StrategyOptions]] = None) -> type[StrategyParams]:
    """A schema taking the config ``keys`` (types and defaults from TrainConfig) and, with
    ``options``, a ``strategy_options`` mapping validated by that model."""
    fields: dict[str, Any] = {}
    for key in keys:
        info = TrainConfig.model_fields[key]
        fields[key] = (info.annotation, copy.copy(info))
    if options is not None:
        fields["strategy_options"] = (options, Field(default_factory=options))
    # a name made again (a module reloaded, a test's strategy) points to the newest schema
    _SCHEMAS[name] = create_model(name, __base__=base, __module__=__name__, **fields)
    return _SCHEMAS[name]


#: every schema params_schema made, by name: pickle finds a schema (and a Selector, a strategy
#: holding its params) as an attribute of this module
_SCHEMAS: dict[str, type[StrategyParams]] = {}


def __getattr__(name: str) -> type[StrategyParams]:
    if name not in _SCHEMAS:
        import assist.strategies  # noqa: F401  (an unpickler may get here before the strategies are imported)
    if name in _SCHEMAS:
        return _SCHEMAS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FixedRawBatch(StrategyParams):
    """Schema base of strategies whose raw batch size is fixed (no ``accumulation_batch_size=auto``)."""

    @model_validator(mode="after")
    def _fixed(self) -> "FixedRawBatch":
        if self.accumulation_batch_size == "auto":
            raise ValueError("accumulation_batch_size='auto' is for batchwise filtering only; give a size")
        return self


def taken_keys(schema: type[StrategyParams]) -> tuple[str, ...]:
    return tuple(schema.model_fields)


def strategy_keys() -> tuple[str, ...]:
    """The config keys that make a run strategic, in TrainConfig's field order: the keys
    that choose a strategy and every key some registered strategy takes."""
    from assist.strategies import STRATEGIES

    taken = set(SELECTOR_KEYS)
    for name in STRATEGIES.names():
        taken.update(taken_keys(STRATEGIES.resolve(name).Params))
    return tuple(key for key in TrainConfig.model_fields if key in taken)


def _describe(schema: type[StrategyParams]) -> str:
    keys = [k for k in taken_keys(schema) if k != "strategy_options"]
    options = schema.model_fields.get("strategy_options")
    if options is not None:
        keys.append("strategy_options (" + ", ".join(options.annotation.model_fields) + ")")
    return ", ".join(keys) or "no options"


def strategy_params(config: TrainConfig, schema: type[P], strategy: str) -> P:
    """The options of ``strategy`` read from ``config``; a ConfigError names a key that is
    invalid, or that is set away from its default although ``strategy`` does not read it."""
    taken = set(taken_keys(schema))
    idle = [key for key in strategy_keys()
            if key not in SELECTOR_KEYS and key not in taken and not at_default(config, key)]
    if idle:
        shown = ", ".join(f"{key}={getattr(config, key)!r}" for key in idle)
        raise ConfigError(f"{shown}: no effect for strategy {strategy!r}, which takes: {_describe(schema)}")
    values = {key: getattr(config, key) for key in taken}

    def unknown(loc: tuple) -> str:
        options = schema.model_fields["strategy_options"].annotation.model_fields if "strategy_options" in taken else {}
        name = ".".join(str(p) for p in loc)
        return (f"{name}: unknown option for strategy {strategy!r}{did_you_mean(str(loc[-1]), options)}; "
                f"valid options: {', '.join(options) or 'none'}")

    try:
        return schema.model_validate(values)
    except ValidationError as error:
        # a rule between keys has no single key: name the strategy whose rule it is
        raise ConfigError(format_validation_error(error, unknown).replace("config: ", f"{strategy}: ")) from None
