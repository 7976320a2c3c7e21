"""The run's own keys: data, model, optimisation, speed and bookkeeping, typed and validated.

Keys follow the thesis (Table 4.1) where it names them; every default lives here with a
one-line reason. The sampling strategies declare their own keys (assist.strategies), and
assist.strategies.resolve joins both into the one flat mapping a user writes.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config could not be built; the message names the key and the problem."""


def refuse_booleans_for_numbers(model: type[BaseModel], values: Any) -> Any:
    """YAML reads ``true`` as a bool, which pydantic would take as 1: refuse it for numbers."""
    if isinstance(values, dict):
        for key, value in values.items():
            field = model.model_fields.get(key)
            if isinstance(value, bool) and field is not None and "bool" not in str(field.annotation):
                raise ValueError(f"{key}: expected a number, got the boolean {value!r}")
    return values


class TrainConfig(BaseModel):
    """The run's own keys: data, model, optimisation, speed and bookkeeping. The keys of the
    sampling strategies are declared by the strategies themselves (assist.strategies)."""


    # numbers must be finite: an infinite learning rate is bad input, not a later divergence
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # Each key's description is its one-line meaning, listed by `assist keys` (assist/keys.py).
    # --- data and model
    dataset: str = Field("digits", description="digits (bundled, offline: the default), synthetic, mnist, "
                                               "cifar10, cifar100 or folder:PATH")
    data_dir: Optional[str] = Field(None, description="where the data files are; unset: $ASSIST_DATA_DIR, "
                                                      "else ~/.cache/assist/data")
    download: bool = Field(False, description="fetch missing MNIST/CIFAR files from public mirrors (checksummed)")
    num_classes: Optional[Union[int, list[int]]] = Field(
        None, description="train and test on some classes only: the first k, or a list of class ids")
    samples_per_class: Optional[int] = Field(default=None, gt=0,
                                             description="at most this many training samples per class")
    model: str = Field("fcnet100", description="lenet, resnet18, dla, simpledla or fcnet<N> (one hidden layer "
                                               "of N units)")
    # --- data scenarios (data/scenarios.py, docs/scenarios.md): the training split only, from the seed
    label_noise: float = Field(default=0.0, ge=0, lt=1, description="share of training labels made wrong "
                                                                    "(the test split stays clean)")
    label_noise_kind: Literal["symmetric", "pairflip"] = Field(
        "symmetric", description="symmetric: a uniformly drawn other class; pairflip: class c becomes c+1")
    class_imbalance: float = Field(default=1.0, ge=1, description="largest / smallest class size of the "
                                                                  "training split (an exponential profile)")
    duplicates: float = Field(default=0.0, ge=0, le=0.95, description="share of the training split replaced "
                                                                      "by exact copies of other samples")
    # --- optimisation (thesis Table 4.1 names)
    epochs: int = Field(default=10, gt=0, description="passes over the training set")
    batch_size: int = Field(default=64, gt=0, description="samples per optimizer step")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="the optimizer")
    learning_rate: float = Field(default=0.05, gt=0, description="the learning rate (a schedule's peak)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD with momentum > 0)")
    weight_decay: float = Field(default=5e-4, ge=0, description="L2 weight decay")
    amsgrad: bool = Field(False, description="the AMSGrad variant of adam and adamw")
    # exponential, multistep: stepped once per epoch (the thesis); cosine, onecycle, linear: set
    # before every optimizer step from the share of training done (docs/schedules.md)
    lr_scheduler: Literal["none", "exponential", "multistep", "cosine", "onecycle", "linear"] = Field(
        "none", description="learning-rate schedule, per epoch (exponential, multistep) or per step (the others)")
    gamma: Optional[float] = Field(default=None, gt=0, description="decay factor of exponential and multistep; "
                                                                   "unset: 0.995 exponential, 0.1 multistep")
    milestone_every: int = Field(default=30, gt=0, description="multistep: decay every this many epochs")
    min_learning_rate: float = Field(default=0.0, ge=0, description="cosine's floor, linear's end value")
    warmup_epochs: float = Field(default=0.0, ge=0, description="linear warm-up from 0 over this many epochs "
                                                                "(fractions allowed)")
    onecycle_start_factor: float = Field(default=0.04, gt=0, le=1,
                                         description="onecycle: start at learning_rate times this")
    onecycle_end_factor: float = Field(default=1e-4, gt=0, le=1,
                                       description="onecycle: end at learning_rate times this")
    onecycle_peak_at: float = Field(default=0.3, gt=0, lt=1,
                                    description="onecycle: share of training done at the peak learning rate")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, description="label smoothing of the training loss "
                                                                        "(evaluation is unsmoothed)")
    grad_clip_norm: Optional[float] = Field(default=None, gt=0, description="clip the gradient norm to this; "
                                                                            "unset: no clipping")
    data_augmentation: Optional[bool] = Field(None, description="augment the training batches; unset: the "
                                                                "data set's default")
    augmentation_recipe: Literal["thesis", "light"] = Field(
        "thesis", description="thesis: flip, affine, padded crop, colour jitter; light: flip and padded crop")
    rng_seed: int = Field(default=0, ge=0, lt=2**63, description="seed of every random stream (weights, "
                                                                 "order, augmentation, selection)")
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    # --- speed (engine/runtime.py, docs/speed.md); evaluation always runs fp32
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="precision of the training and scoring forwards (evaluation: fp32)")
    score_precision: Optional[Literal["fp32", "bf16", "fp16"]] = Field(
        None, description="precision of the scoring forwards; unset: as precision")
    channels_last: bool = Field(False, description="NHWC weights and inputs (convolutional models)")
    compile: bool = Field(False, description="torch.compile(model, dynamic=True)")
    score_every: int = Field(default=1, ge=1, description="n > 1: reuse scores less than n epochs old "
                                                          "instead of scoring again")
    # data-parallel runs (docs/distributed.md): BatchNorm statistics over the whole batch
    sync_batchnorm: bool = Field(False, description="data-parallel runs: BatchNorm statistics over the whole "
                                                    "batch (docs/distributed.md)")
    # --- evaluation and bookkeeping
    train_eval_subset: Optional[int] = Field(default=None, gt=0, description="train metrics on this many "
                                             "training samples; unset: the whole training set")
    train_eval_every: int = Field(default=1, gt=0, description="train metrics every n epochs (and the last)")
    eval_batch_size: int = Field(default=1024, gt=0, description="batch size of evaluation and epoch scoring")
    num_threads: Optional[int] = Field(default=None, gt=0, description="torch threads; unset: torch's default")
    checkpoint_every: int = Field(default=1, gt=0, description="write a checkpoint every n epochs")
    # mirror the run directory (optional extras)
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="mirror the run into these trackers while it trains (optional extras)")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, values: Any) -> Any:
        return refuse_booleans_for_numbers(cls, values)

    @model_validator(mode="after")
    def _optimizer_options(self) -> "TrainConfig":
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer=sgd with momentum > 0")
        return self

    @model_validator(mode="after")
    def _scenario_options(self) -> "TrainConfig":
        if self.label_noise_kind != "symmetric" and not self.label_noise:
            raise ValueError(f"label_noise_kind={self.label_noise_kind} has no effect without label_noise > 0")
        return self

    @model_validator(mode="after")
    def _precision_options(self) -> "TrainConfig":
        for key in ("precision", "score_precision"):
            if getattr(self, key) == "fp16" and not self.device.startswith("cuda"):
                raise ValueError(f"{key}=fp16 needs a CUDA device (device={self.device!r}); use bf16 on a CPU")
        return self

    @model_validator(mode="after")
    def _schedule_options(self) -> "TrainConfig":
        kind = self.lr_scheduler
        if self.warmup_epochs and kind in ("exponential", "multistep"):
            raise ValueError(f"warmup_epochs works with lr_scheduler none, cosine, onecycle or linear, not {kind}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs:g} is longer than the run's {self.epochs} epochs")
        if self.min_learning_rate and kind not in ("cosine", "linear"):
            raise ValueError("min_learning_rate has no effect without lr_scheduler=cosine or linear")
        if self.min_learning_rate >= self.learning_rate:
            raise ValueError(f"min_learning_rate={self.min_learning_rate:g} must be below learning_rate")
        onecycle = ("onecycle_start_factor", "onecycle_end_factor", "onecycle_peak_at")
        changed = [k for k in onecycle if getattr(self, k) != config_default(k)]
        if changed and kind != "onecycle":
            raise ValueError(f"{', '.join(changed)} have no effect without lr_scheduler=onecycle")
        return self

    @field_validator("num_classes")
    @classmethod
    def _positive_classes(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be a positive count or a list of class ids")
        return value

    @property
    def resolved_gamma(self) -> float:
        if self.gamma is not None:
            return self.gamma
        return 0.995 if self.lr_scheduler == "exponential" else 0.1


# Names people type for a key, from other tools' conventions.
_ALIASES = {"lr": "learning_rate", "seed": "rng_seed", "bs": "batch_size", "wd": "weight_decay",
            "scheduler": "lr_scheduler", "aug": "data_augmentation", "augmentation": "data_augmentation",
            "epoch": "epochs", "raw_batch_size": "accumulation_batch_size", "opt": "optimizer"}


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a mistyped key, or an empty string."""
    valid = list(valid)
    guess = _ALIASES.get(key) if _ALIASES.get(key) in valid else None
    if guess is None:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.75)
        guess = close[0] if close else None
    return f" (did you mean {guess!r}?)" if guess else ""


def unknown_config_key(loc: tuple) -> str:
    key = ".".join(str(p) for p in loc)
    keys = TrainConfig.model_fields
    return f"unknown key {key!r}{did_you_mean(key, keys)}; valid keys: {', '.join(keys)}"


def format_validation_error(error: ValidationError, unknown: Callable[[tuple], str] = unknown_config_key) -> str:
    """One line naming every offending key; ``unknown(loc)`` words an unknown key."""
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            problems.append(unknown(tuple(item["loc"])))
        else:
            message = item["msg"].removeprefix("Value error, ")
            value = item.get("input")
            shown = "" if isinstance(value, dict) else f" (got {shorten(repr(value))})"
            problems.append(f"{key}: {message}{shown}")
    return "; ".join(problems)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a message, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def config_default(key: str) -> Any:
    """The default of config key ``key``."""
    return TrainConfig.model_fields[key].get_default(call_default_factory=True)


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Validate a mapping into a TrainConfig, raising ConfigError with one readable line."""
    try:
        return TrainConfig(**values)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (so 0.1, true, [1, 2] and null work).
    Dotted keys (``strategy_options.ratio=0.3``) address entries of a dict-valued key."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        if "nested too deeply" in str(error):
            raise ConfigError(f"{key}: the value is nested too deeply") from None
        value = raw
    if isinstance(value, dict) and len(value) == 1 and raw.strip().endswith(":") and None in value.values():
        value = raw.strip()   # `dataset=folder:` is the text "folder:", not a mapping {folder: null}
    return key, value


def merge_dotted(values: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``values`` updated by ``layer``; a dotted key (``strategy_options.ratio``) sets one
    entry of a mapping-valued key. The one merge of overrides, config files and sweep layers."""
    merged = dict(values)
    for key, value in layer.items():
        if "." not in key:
            merged[key] = value
            continue
        head, tail = key.split(".", 1)
        nested = merged.get(head)
        if nested is not None and not isinstance(nested, dict):
            raise ConfigError(f"{key}: {head!r} holds {nested!r}, not a mapping, so it has no entry {tail!r}")
        merged[head] = merge_dotted(dict(nested or {}), {tail: value})
    return merged


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    merged = dict(values)
    for text in overrides:
        key, value = parse_override(text)
        merged = merge_dotted(merged, {key: value})
    return merged


MAX_YAML_NODES = 200_000  # values of a YAML document with its aliases expanded; configs hold hundreds


class StrictLoader(yaml.SafeLoader):
    """The YAML loader of the config files and sweep specs ASSIST reads: safe, refusing a key
    given twice (PyYAML would keep the last silently) and a document whose aliases expand to
    more than ``MAX_YAML_NODES`` values (a "billion laughs": a few lines of nested aliases that
    grow exponentially in whatever walks the result)."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            sizes: dict[int, int] = {}

            def expanded(item: Any) -> int:  # each distinct node once: aliases share nodes
                key = id(item)
                if key not in sizes:
                    sizes[key] = 0  # a cycle counts as nothing more
                    children = item.value if isinstance(item.value, list) else []
                    flat = [c for pair in children for c in (pair if isinstance(pair, tuple) else (pair,))]
                    sizes[key] = min(MAX_YAML_NODES + 1, 1 + sum(expanded(c) for c in flat))
                return sizes[key]

            if expanded(node) > MAX_YAML_NODES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"its aliases expand to more than {MAX_YAML_NODES:,} values (a YAML alias bomb?)",
                    node.start_mark)
        return node


def _unique_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


MAX_YAML_BYTES = 1 << 20   # a config file or sweep spec; real ones are a few kilobytes


def load_yaml(text: str) -> Any:
    """A YAML document through the strict loader; nesting too deep for the parser is a
    YAMLError like any other (not a RecursionError with thousands of lines)."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("it is nested too deeply (thousands of levels)") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: line and column, and what is wrong there."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[-1]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def read_yaml_file(path: Path, what: str) -> Any:
    """A config file's or sweep spec's YAML, or one line saying why it cannot be read."""
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {str(path)!r} is {size:,} bytes, over the {MAX_YAML_BYTES:,} a {what} may hold")
    try:
        return load_yaml(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {str(path)!r} is not a text file (YAML expected)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {yaml_problem(error)}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    data = read_yaml_file(path, "config file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    return data
