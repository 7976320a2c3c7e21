"""A run resolved once: the run's own keys, its strategy, and that strategy's validated options.

Users write one flat mapping of keys (the thesis's Table 4.1 names), and ``config.yaml``
stores one. :func:`resolve_run` splits it: the run's own keys go to
:class:`~assist.config.TrainConfig`, the keys that choose a strategy (``strategy`` and the
thesis's two flags) name it, and the keys it takes go to its ``Params`` class, which checks
them and the rules between them. A key that some other strategy takes, set away from its
default, is an error naming the key and what the chosen strategy takes. The result,
:class:`ResolvedRun`, is what the trainer, the Selector and sweep planning receive; nothing
validates it again (docs/architecture.md, "Options").
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assist.config import ConfigError, TrainConfig, config_default, did_you_mean, format_validation_error, make_config
from assist.strategies.filtering import THESIS_FLAGS
from assist.strategies.options import StrategyParams
from assist.strategies.registry import STRATEGIES

#: keys that choose the strategy itself rather than configure one
CHOICE_KEYS = ("strategy", "epoch_filtering", "batch_filtering")
_STRATEGY_OF_FLAGS = {flags: name for name, flags in THESIS_FLAGS.items()}

# The order config.yaml has listed the strategy keys in since the first format (sweep directory
# names follow it): they come after this run key; keys of later strategies follow these.
_STRATEGY_KEYS_AFTER = "sync_batchnorm"
_LEGACY_ORDER = (
    "epoch_filter_augmentation", "strategy", "epoch_filtering", "batch_filtering", "batch_accumulation",
    "accumulation_batch_size", "accumulation_batch_size_max", "filter", "soft_margin", "selector", "select_k",
    "select_q", "select_p", "select_p_end", "select_p_schedule", "select_buckets", "select_split",
    "select_quota", "fill_random", "epoch_filter", "epoch_soft_margin", "epoch_selector", "epoch_select_k",
    "overflow", "starved_epoch", "scoring_mode", "strategy_options")

# Keys added after the first run-directory format. Run directories written before them lack
# them; at their defaults they change nothing, so they stay out of a run's identity (its hash)
# and a stored config without them still resumes (docs/architecture.md, "Run directories").
ADDED_KEYS: frozenset[str] = frozenset({
    "accumulation_batch_size_max", "select_p_end", "select_p_schedule", "select_split", "select_quota",
    "epoch_filter", "epoch_soft_margin", "epoch_selector", "epoch_select_k",
    "min_learning_rate", "warmup_epochs", "onecycle_start_factor", "onecycle_end_factor", "onecycle_peak_at",
    "label_smoothing", "grad_clip_norm", "precision", "score_precision", "channels_last", "compile",
    "score_every", "sync_batchnorm",
    "label_noise", "label_noise_kind", "class_imbalance", "duplicates",
})


class _Choice(BaseModel):
    """The types of the keys that choose a strategy."""

    model_config = ConfigDict(extra="ignore")
    strategy: Optional[str] = Field(None, description="the sampling strategy or a preset; unset: chosen by "
                                                      "epoch_filtering and batch_filtering")
    epoch_filtering: bool = Field(False, description="the thesis's flag: filter the shuffled data set at each "
                                                     "epoch start (Algorithm 8)")
    batch_filtering: bool = Field(False, description="the thesis's flag: filter each raw batch "
                                                     "(Algorithms 9/10)")


def _unset_values() -> dict[str, Any]:
    """Each strategy key's value in a run that leaves it unset, resolved (``fill_random``: off
    without select_k); the first registered schema that takes it decides (a peer method's
    ``strategy_options`` is the empty mapping)."""
    return _unset_values_of(tuple(STRATEGIES.names()))


@lru_cache(maxsize=None)
def _unset_values_of(names: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {"strategy": None, "epoch_filtering": False, "batch_filtering": False}
    for name in names:
        for key, value in STRATEGIES.resolve(name).Params().model_dump().items():
            values.setdefault(key, {} if key == "strategy_options" else value)
    return values


def strategy_keys() -> tuple[str, ...]:
    """The keys that make a run strategic, in the flat order: the keys that choose a strategy
    and every key some registered strategy takes (twins reset them, reports label runs by them)."""
    taken = _unset_values()
    return tuple(key for key in flat_keys() if key in taken)


def flat_keys() -> tuple[str, ...]:
    """Every key a run takes, in the order ``config.yaml`` lists them."""
    strategic = list(_LEGACY_ORDER) + [k for k in _unset_values() if k not in _LEGACY_ORDER]
    keys: list[str] = []
    for key in TrainConfig.model_fields:
        keys.append(key)
        if key == _STRATEGY_KEYS_AFTER:
            keys += strategic
    return tuple(keys)


def flat_default(key: str) -> Any:
    """The default any key (the run's own or a strategy's) declares; ``None`` where it is
    resolved from other keys (``fill_random``)."""
    if key in TrainConfig.model_fields:
        return config_default(key)
    if key in CHOICE_KEYS or key == "strategy_options":
        return _unset_values()[key]
    fields = STRATEGIES.resolve(takers(key)[0]).Params.model_fields
    return fields[key].get_default(call_default_factory=True)


def takers(key: str) -> tuple[str, ...]:
    """The strategies that take ``key``."""
    return tuple(name for name in STRATEGIES.names() if key in STRATEGIES.resolve(name).Params.model_fields)


def _at_default(key: str, value: Any) -> bool:
    """Whether a strategy key the chosen strategy does not take is left as if unset (``None``
    stands for a default resolved from other keys, ``fill_random``'s)."""
    return value == flat_default(key) or value == _unset_values()[key]


def _check_value(key: str, value: Any) -> None:
    """Refuse ``value`` for ``key`` by the key's own type and range (the schema of a strategy that takes it)."""
    schema = STRATEGIES.resolve(takers(key)[0]).Params
    try:
        schema.model_validate({key: value})
    except ValidationError as error:
        own = [e for e in error.errors() if e["loc"][:1] == (key,)]
        if own:
            raise ConfigError(format_validation_error(ValidationError.from_exception_data(schema.__name__, own)))


def unknown_key(key: str) -> str:
    keys = flat_keys()
    return f"unknown key {key!r}{did_you_mean(key, keys)}; valid keys: {', '.join(keys)}"


@dataclass(frozen=True)
class ResolvedRun:
    """One run, validated: its own keys (``config``), its strategy's name and options, and the
    ``strategy_options`` mapping as given (a run's identity keeps the spelling it was given).

    Reading a flat key as an attribute (``run.select_k``, ``run.learning_rate``) gives the
    value ``config.yaml`` stores for it, and :meth:`flat` the whole mapping."""

    config: TrainConfig
    strategy: str
    options: StrategyParams
    strategy_options: dict[str, Any] = field(default_factory=dict)
    _flat: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        run, options = self.config.model_dump(), self.options.model_dump()
        flags = THESIS_FLAGS.get(self.strategy, (False, False))
        chosen = {"strategy": self.strategy, "epoch_filtering": flags[0], "batch_filtering": flags[1],
                  "strategy_options": dict(self.strategy_options)}
        values = {}
        for key in flat_keys():
            for source in (run, chosen, options):
                if key in source:
                    values[key] = source[key]
                    break
            else:
                values[key] = _unset_values()[key]
        object.__setattr__(self, "_flat", values)

    def __getattr__(self, key: str) -> Any:
        if not key.startswith("_") and key in self._flat:
            return self._flat[key]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {key!r}")

    def flat(self, mode: str = "python") -> dict[str, Any]:
        """The run as one flat mapping, as ``config.yaml`` stores it (``mode="json"``: JSON types)."""
        if mode == "python":
            return dict(self._flat)
        return {**self._flat, **self.config.model_dump(mode=mode)}

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """:meth:`flat` under the name a config's mapping has in pydantic."""
        return self.flat(mode)

    def model_copy(self, *, update: Optional[Mapping[str, Any]] = None) -> "ResolvedRun":
        """Another run: this one's keys with ``update`` (flat keys) set, resolved anew."""
        return resolve_run({**self.flat(), **dict(update or {})})


def strategy_name(values: Mapping[str, Any]) -> str:
    """The strategy ``values`` choose: ``strategy``, or the thesis's two flags; a contradiction
    between them is an error naming both."""
    try:
        choice = _Choice.model_validate(dict(values))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    flags = (choice.epoch_filtering, choice.batch_filtering)
    derived = _STRATEGY_OF_FLAGS[flags]
    name = choice.strategy
    if name is None:
        return derived
    if any(flags) and name != derived:
        if name in THESIS_FLAGS:
            raise ConfigError(f"strategy={name!r} conflicts with epoch_filtering={flags[0]}, "
                              f"batch_filtering={flags[1]} (which select {derived!r})")
        raise ConfigError(f"strategy={name!r} conflicts with epoch_filtering={flags[0]}, batch_filtering={flags[1]}: "
                          f"the two flags choose among the thesis's strategies ({', '.join(THESIS_FLAGS)}); "
                          f"leave them false for {name!r}")
    return name


def strategy_params(name: str, values: Mapping[str, Any]) -> StrategyParams:
    """The options of strategy ``name`` read from the flat ``values``; a ConfigError names a key
    that is invalid, or set away from its default although ``name`` does not take it."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy: unknown strategy {name!r}; available: {', '.join(STRATEGIES.names())}")
    schema = STRATEGIES.resolve(name).Params
    taken = schema.model_fields
    idle = [key for key in strategy_keys() if key not in CHOICE_KEYS and key not in taken
            and key in values and not _at_default(key, values[key])]
    for key in idle:   # a value no strategy could take is named as such first
        _check_value(key, values[key])
    if idle:
        shown = ", ".join(f"{key}={values[key]!r}" for key in idle)
        raise ConfigError(f"{shown}: no effect for strategy {name!r}, which takes: {_describe(schema)}")
    options = taken["strategy_options"].annotation.model_fields if "strategy_options" in taken else {}

    def unknown(loc: tuple) -> str:
        where = ".".join(str(p) for p in loc)
        return (f"{where}: unknown option for strategy {name!r}{did_you_mean(str(loc[-1]), options)}; "
                f"valid options: {', '.join(options) or 'none'}")

    given = {key: values[key] for key in taken if key in values}
    if given.get("strategy_options") is None:
        given.pop("strategy_options", None)
    try:
        return schema.model_validate(given)
    except ValidationError as error:
        # a rule between keys has no single key: name the strategy whose rule it is
        raise ConfigError(format_validation_error(error, unknown).replace("config: ", f"{name}: ")) from None


def _describe(schema: type[StrategyParams]) -> str:
    keys = [k for k in schema.model_fields if k != "strategy_options"]
    options = schema.model_fields.get("strategy_options")
    if options is not None:
        keys.append("strategy_options (" + ", ".join(options.annotation.model_fields) + ")")
    return ", ".join(keys) or "no options"


def resolve_run(values: Mapping[str, Any]) -> ResolvedRun:
    """Split a flat mapping of keys into the resolved run, checking every key once."""
    values = dict(values)
    unknown = [key for key in values if key not in flat_keys()]
    if unknown:
        raise ConfigError("; ".join(unknown_key(key) for key in unknown))
    config = make_config({k: v for k, v in values.items() if k in TrainConfig.model_fields})
    name = strategy_name(values)
    options = strategy_params(name, values)
    given = values.get("strategy_options") if "strategy_options" in type(options).model_fields else None
    return ResolvedRun(config, name, options, dict(given or {}))


def twin_of(run: ResolvedRun) -> ResolvedRun:
    """The archetype twin: the same run keys and seed, every strategy key at its default."""
    return ResolvedRun(run.config, "archetype", STRATEGIES.resolve("archetype").Params())


def identity_dump(values: dict[str, Any]) -> dict[str, Any]:
    """A resolved run's flat values without the added keys that sit at their defaults."""
    return {k: v for k, v in values.items() if not (k in ADDED_KEYS and v == flat_default(k))}


def with_added_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config (possibly written before the added keys) with their defaults filled in."""
    return {**{k: flat_default(k) for k in ADDED_KEYS}, **stored}


def config_changes(stored: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The keys (sorted) in which two flat configs differ, either written before or after keys
    were added (a run directory's config.yaml against a run, a checkpoint's config against it)."""
    stored, config = with_added_defaults(stored), with_added_defaults(config)
    return sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))


def describe_keys() -> list[dict[str, Any]]:
    """Every key a run takes, in ``config.yaml``'s order: its ``type``, ``default``, one-line
    ``meaning`` (the comment beside its declaration) and the ``strategies`` that take it (empty
    for the run's own keys and the keys that choose the strategy, which every run has)."""
    rows = []
    for key in flat_keys():
        owner = _declaring_class(key)
        annotation = owner.model_fields[key].annotation
        kind = "mapping" if key == "strategy_options" else _type_name(annotation)
        rows.append({"key": key, "type": kind, "default": flat_default(key),
                     "meaning": owner.model_fields[key].description or _comments(owner).get(key, ""),
                     "strategies": () if key in TrainConfig.model_fields or key in CHOICE_KEYS else takers(key)})
    return rows


def _declaring_class(key: str) -> type[BaseModel]:
    if key in TrainConfig.model_fields:
        return TrainConfig
    if key in CHOICE_KEYS:
        return _Choice
    for cls in STRATEGIES.resolve(takers(key)[0]).Params.__mro__:
        if key in getattr(cls, "__annotations__", {}):
            return cls
    raise KeyError(key)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or re.sub(r"\b(typing|pydantic|assist)\.[\w.]*?(\w+)\b", r"\2", repr(annotation))


@lru_cache(maxsize=None)
def _comments(cls: type) -> dict[str, str]:
    """The comment each field declared in ``cls`` carries: at the end of its line, else the
    comment lines just above it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            if not stripped.startswith("# ---"):   # a section header, not a key's comment
                above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"\s+(\w+)\s*:", line)
        if match and match.group(1) in getattr(cls, "__annotations__", {}):
            tail = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            found[match.group(1)] = tail or " ".join(above)
        above = []
    return found
