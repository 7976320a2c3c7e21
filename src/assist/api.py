"""The Python API: build a config, train a run, compare strategies against their twin."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from assist.config import TrainConfig, make_config, twin_config
from assist.data.base import DataError, ImageDataset
from assist.engine.callbacks import RunRecorder
from assist.engine.checkpoint import Checkpointer, load_latest_checkpoint
from assist.engine.events import Callback
from assist.engine.trainer import Trainer, TrainState, build_model
from assist.strategies import build_strategy
from assist.tracking import RunStore
from assist.tracking.trackers import tracker_callbacks

ConfigLike = Union[TrainConfig, dict[str, Any]]


@dataclass
class RunResult:
    config: TrainConfig
    state: TrainState
    summary: dict[str, Any]
    path: Optional[Path]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    @property
    def final(self) -> dict[str, Any]:
        return self.state.history[-1] if self.state.history else {}


def as_config(config: ConfigLike) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else make_config(dict(config))


def config_hash(config: TrainConfig) -> str:
    """Stable identity of a resolved config (independent of key order)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(config: TrainConfig) -> str:
    return f"{config.dataset.replace(':', '_').replace('/', '_')}-{config.model}-{config.strategy}-seed{config.rng_seed}-{config_hash(config)}"


def load_data(config: TrainConfig) -> ImageDataset:
    from assist.data import load_dataset

    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                        num_classes=config.num_classes, samples_per_class=config.samples_per_class,
                        seed=config.rng_seed)


def check_device(config: TrainConfig) -> None:
    import torch

    try:
        device = torch.device(config.device)
    except RuntimeError:
        raise ValueError(f"device: {config.device!r} is not a device name (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {config.device!r} was asked for but CUDA is not available here")


def train(config: ConfigLike, *, out: Union[str, Path, None] = None, restart: bool = False,
          data: Optional[ImageDataset] = None, callbacks: Iterable[Callback] = ()) -> RunResult:
    """Train one run. With ``out`` the run directory is written as training goes; an unfinished
    run there with the same config is resumed from its last checkpoint. Everything that can be
    checked before training (config, data, model/data fit, directory) is checked first, so bad
    input never leaves a half-written run directory."""
    config = as_config(config)
    check_device(config)
    data = data if data is not None else load_data(config)
    model = build_model(config, data)
    strategy = build_strategy(config)  # validates strategy_options before anything is written
    store, checkpoint, recorders = None, None, []
    trackers = tracker_callbacks(config.trackers, out)  # packages checked before the directory is touched
    if out is not None:
        store = RunStore(out)
        resolved = config.model_dump(mode="json")
        if store.exists and not restart:
            store.check_resumable(resolved)
            checkpoint = load_latest_checkpoint(store.path / "checkpoints")
            store.rewrite_metrics(checkpoint["state"]["history"] if checkpoint else [])
            store.log("resume from " + (f"epoch {checkpoint['state']['epoch']}" if checkpoint else "the start"))
        else:
            store.create(resolved, restart=restart)
        recorders = [RunRecorder(store), Checkpointer(store.path / "checkpoints", config.checkpoint_every), *trackers]
    trainer = Trainer(config, data, model=model, strategy=strategy, callbacks=[*recorders, *callbacks])
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
    state = trainer.fit()
    return RunResult(config=config, state=state, summary=trainer.summary(), path=store.path if store else None)


def compare(config: ConfigLike, strategies: Iterable[ConfigLike], *, out: Union[str, Path, None] = None,
            callbacks_for=None) -> dict[str, RunResult]:
    """Train the archetype twin of ``config`` and each strategic variant, same data and seed.
    ``strategies`` are override mappings applied on top of ``config``; keys of the result are
    readable labels, the archetype first."""
    base = as_config(config)
    data = load_data(base)
    runs: dict[str, TrainConfig] = {"archetype": twin_config(base)}
    for overrides in strategies:
        values = {**base.model_dump(), **(overrides if isinstance(overrides, dict) else overrides.model_dump())}
        if "strategy" not in (overrides if isinstance(overrides, dict) else {}):
            values["strategy"] = None
        variant = make_config(values)
        runs.setdefault(strategy_label(variant), variant)
    results = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for label, run_config in runs.items():
        target = None if out is None else Path(out) / f"{stamp}-{run_name(run_config)}"
        extra = callbacks_for(label) if callbacks_for else ()
        results[label] = train(run_config, out=target, data=data, callbacks=extra)
    return results


def strategy_label(config: TrainConfig) -> str:
    """A short readable name of what makes a run strategic."""
    if config.strategy == "archetype":
        return "archetype"
    parts = [config.strategy]
    if config.epoch_filtering or config.batch_filtering:
        parts.append(config.filter)
        if config.selector:
            parts.append(f"{config.selector} k={config.select_k:g}" if config.select_k else config.selector)
        if config.batch_filtering:
            parts.append(f"acc {config.raw_batch_size}" if config.batch_accumulation else "unstable")
    return " ".join(parts)


__all__ = ["RunResult", "TrainConfig", "compare", "config_hash", "load_data", "make_config",
           "run_name", "strategy_label", "train", "DataError"]
