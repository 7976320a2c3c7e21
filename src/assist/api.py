"""The Python API: build a config, train a run, compare strategies against their twin."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from assist.config import TrainConfig
from assist.data.base import DataError, ImageDataset
from assist.engine.callbacks import RunRecorder
from assist.engine.checkpoint import Checkpointer, resume_trainer
from assist.engine.distributed import Group, cpu_state
from assist.events import Callback
from assist.engine.trainer import Trainer, TrainState
from assist.models import build_model
from assist.strategies import ResolvedRun, build_strategy, strategy_keys
from assist.strategies.resolve import identity_dump
from assist.tracking import RunStore
from assist.tracking.trackers import tracker_callbacks
from assist.validation import twin_config, validate_run

make_config = validate_run  # the public name: a config validated as a whole run

ConfigLike = Union[ResolvedRun, TrainConfig, dict[str, Any]]


@dataclass
class RunResult:
    config: ResolvedRun
    state: TrainState
    summary: dict[str, Any]
    path: Optional[Path]
    resumed_from: int = 0   # the epoch of the checkpoint the run resumed from (0: it started afresh)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    @property
    def final(self) -> dict[str, Any]:
        return self.state.history[-1] if self.state.history else {}


def as_config(config: ConfigLike) -> ResolvedRun:
    """The resolved run (``assist.validation.validate_run``) of a mapping, or the run itself."""
    return validate_run(config)


def config_hash(config: ResolvedRun) -> str:
    """Stable identity of a resolved run (independent of key order)."""
    text = json.dumps(identity_dump(config.flat(mode="json")), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(config: ResolvedRun) -> str:
    dataset = config.dataset.replace(":", "_").replace("/", "_")
    return f"{dataset}-{config.model}-{config.strategy}-seed{config.rng_seed}-{config_hash(config)}"


def load_data(config: Union[ResolvedRun, TrainConfig]) -> ImageDataset:
    from assist.data import load_dataset
    from assist.data.scenarios import Scenario

    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                        num_classes=config.num_classes, samples_per_class=config.samples_per_class,
                        seed=config.rng_seed, scenario=Scenario.of(config))


def train(config: ConfigLike, *, out: Union[str, Path, None] = None, restart: bool = False,
          data: Optional[ImageDataset] = None, callbacks: Iterable[Callback] = (),
          group: Optional[Group] = None) -> RunResult:
    """Train one run. With ``out`` the run directory is written as training goes; an unfinished
    run there with the same config is resumed from its last checkpoint. Everything that can be
    checked before training (config, data, model/data fit, directory) is checked first, so bad
    input never leaves a half-written run directory.

    Under a distributed launcher (``assist train --nproc N``, ``torchrun -m assist``, a Slurm
    job step) the run is data-parallel (docs/distributed.md): rank 0 checks and writes the run
    directory and sends the resumed state to the other ranks; ``callbacks`` run on every rank."""
    config = as_config(config)
    apply_threads(config)
    group = group if group is not None else Group.from_environment(config.device)
    group.check(config)
    try:
        result = _train(config, out, restart, data, callbacks, group)
    except BaseException:
        group.close(wait=False)   # an error every rank shares (group.first), or this rank's own
        raise
    group.close()
    return result


def _train(config: ResolvedRun, out: Union[str, Path, None], restart: bool, data: Optional[ImageDataset],
           callbacks: Iterable[Callback], group: Group) -> RunResult:
    if data is None:  # rank 0 first: a download or a bad data set happens (or fails) once
        data = group.first(lambda: load_data(config))
        data = data if group.is_main else load_data(config)
    model = build_model(config, data)  # checks that the model takes the data's images
    strategy = build_strategy(config)
    trackers = tracker_callbacks(config.trackers, out) if group.is_main else []  # packages checked first
    if out is None:
        trainer = Trainer(config, data, model=model, strategy=strategy, callbacks=list(callbacks), group=group)
        return RunResult(config=config, state=trainer.fit(), summary=trainer.summary(), path=None)
    if not group.is_main:
        return _follow(config, data, model, strategy, list(callbacks), group, Path(out))
    store = RunStore(out)
    # refuse a directory ASSIST did not write before touching it; the lock is held until the
    # run ends, so a second process on this directory stops here
    lock, resume = group.first(lambda: _open_store(store, config, restart))
    try:
        recorders = [RunRecorder(store), Checkpointer(store.path / "checkpoints", config.checkpoint_every), *trackers]
        trainer = Trainer(config, data, model=model, strategy=strategy, callbacks=[*recorders, *callbacks], group=group)
        epoch = group.first(lambda: resume_trainer(trainer, store.path / "checkpoints") if resume else 0)
        if epoch and config.num_threads is None and trainer.resumed_threads:
            import torch

            torch.set_num_threads(int(trainer.resumed_threads))   # as the run started (bit-identical resume)
        was = trainer.resumed_world_size
        if epoch and was and was != group.world_size:
            warnings.warn(f"{store.path}: the run trained on {_processes(was)} and resumes on "
                          f"{_processes(group.world_size)}, so the resumed run will not repeat the uninterrupted "
                          f"one exactly (resume on {was} to keep it exact; docs/distributed.md)")
        if resume:
            store.rewrite_metrics(trainer.state.history if epoch else [])
            if not store.marked:
                store.mark()  # a run from before the marker existed: adopt it
            store.log(f"resume from epoch {epoch}" if epoch else "resume from the start")
        group.broadcast(cpu_state(trainer.state_dict()) if epoch else None)  # the other ranks' starting point
        state = trainer.fit()
    finally:
        lock.release()
    return RunResult(config=config, state=state, summary=trainer.summary(), path=store.path, resumed_from=epoch)


def _processes(count: int) -> str:
    return f"{count} process" + ("es" if count != 1 else "")


def _open_store(store: RunStore, config: ResolvedRun, restart: bool):
    """Check the run directory, lock it, and create it or check that it resumes this config;
    the lock, and whether the run resumes."""
    store.check_usable(restart=restart)
    lock = store.lock()
    try:
        if not restart:
            rebuilt = store.recover_config()
            if rebuilt:
                warnings.warn(f"{store.path}: config.yaml was missing; rebuilt from checkpoint {rebuilt}")
        resume = store.exists and not restart
        if resume:
            store.check_resumable(config.flat(mode="json"))
        else:
            store.create(config.flat(mode="json"), restart=restart)
    except BaseException:
        lock.release()
        raise
    return lock, resume


def _follow(config: ResolvedRun, data: ImageDataset, model, strategy, callbacks: list, group: Group,
            out: Path) -> RunResult:
    """A rank other than 0 of a data-parallel run: the same steps as rank 0, writing nothing."""
    group.first(lambda: None)   # rank 0's run directory (or its error)
    trainer = Trainer(config, data, model=model, strategy=strategy, callbacks=callbacks, group=group)
    group.first(lambda: None)   # rank 0's resume (or its error)
    state = group.broadcast(None)
    if state is not None:
        trainer.load_state_dict(state)
    return RunResult(config=config, state=trainer.fit(), summary=trainer.summary(), path=out)


class Comparison(dict):
    """What ``compare`` returns: label -> the first seed's RunResult (archetype first, then the
    strategies, then their controls), as before seeds and controls existed; ``by_seed``: label ->
    the RunResult of every seed; ``verdicts``: each strategy against its twin and its control,
    paired by seed (``assist.verdicts``)."""

    def __init__(self, by_seed: dict[str, list[RunResult]], verdicts: list) -> None:
        super().__init__({label: results[0] for label, results in by_seed.items()})
        self.by_seed, self.verdicts = by_seed, verdicts


def compare(config: ConfigLike, strategies: Iterable[ConfigLike], *, out: Union[str, Path, None] = None,
            callbacks_for=None, seeds: int = 1, control: Optional[str] = None) -> Comparison:
    """Train the archetype twin of ``config`` and each strategic variant, same data and seed.
    ``strategies`` are override mappings applied on top of ``config`` (strategy keys of
    ``config``, e.g. ``accumulation_batch_size``, apply to every variant and must be taken by
    each); keys of the result are readable labels, the archetype first. Every run is validated
    before the first one trains.

    ``seeds``: that many seeds from the config's ``rng_seed`` on, each seed training every
    side. ``control`` (``rs2`` or ``random_subset``): each strategy also gets its random control
    at the share of sample-steps it trained in the same seed (``assist.strategies.controls``;
    strategies that are controls themselves get none). docs/peers.md, "Random controls and
    paired verdicts"."""
    from assist.strategies.controls import CONTROLS, control_label, control_overrides
    from assist.verdicts import control_budget, outcome, paired_verdict

    if seeds < 1:
        raise ValueError(f"compare: seeds must be at least 1, got {seeds}")
    values = _given(config)
    taken = set(strategy_keys())
    plain = {k: v for k, v in values.items() if k not in taken}
    first = validate_run(plain).rng_seed
    layers: dict[str, dict[str, Any]] = {}
    for overrides in strategies:
        layer = _given(overrides)
        merged = {**values, **layer}
        if "strategy" not in layer:
            merged["strategy"] = None
        label = strategy_label(validate_run(merged))
        if label != "archetype":   # the twin is trained anyway
            layers.setdefault(label, merged)
    controlled = [label for label, merged in layers.items() if control and merged.get("strategy") not in CONTROLS]
    plans = []
    for seed in range(first, first + seeds):   # every run checked before the first trains
        shared = validate_run({**plain, "rng_seed": seed})
        runs = {"archetype": twin_config(shared), **{label: validate_run({**merged, "rng_seed": seed})
                                                     for label, merged in layers.items()}}
        if controlled:
            validate_run({**plain, "rng_seed": seed, **control_overrides(control, 0.5)})
        plans.append((shared, runs))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    by_seed: dict[str, list[RunResult]] = {}

    def run(label: str, run_config: ResolvedRun, data: ImageDataset) -> RunResult:
        target = None if out is None else Path(out) / f"{stamp}-{run_name(run_config)}"
        extra = callbacks_for(label) if callbacks_for else ()
        result = train(run_config, out=target, data=data, callbacks=extra)
        by_seed.setdefault(label, []).append(result)
        return result

    for shared, runs in plans:
        data = load_data(shared)
        done = {label: run(label, run_config, data) for label, run_config in runs.items()}
        for label in controlled:
            fraction = control_budget(done[label].history, done["archetype"].history)
            run(control_label(control, label),
                validate_run({**plain, "rng_seed": shared.rng_seed, **control_overrides(control, fraction)}), data)
    outcomes = {label: {r.config.rng_seed: outcome(r.history) for r in results
                        if r.summary.get("status") == "completed" and r.history}
                for label, results in by_seed.items()}
    verdicts = []
    for label in layers:
        verdicts.append(paired_verdict(label, "archetype", outcomes[label], outcomes["archetype"], outcomes["archetype"]))
        if label in controlled:
            verdicts.append(paired_verdict(label, control, outcomes[label], outcomes[control_label(control, label)],
                                           outcomes["archetype"]))
    return Comparison(by_seed, verdicts)


def _given(config: ConfigLike) -> dict[str, Any]:
    """The keys a mapping or a run sets: a run's own keys as given, its strategy keys away from their defaults."""
    if isinstance(config, ResolvedRun):
        options = {**config.options.model_dump(exclude_unset=True), "strategy_options": config.strategy_options}
        return {**config.config.model_dump(exclude_unset=True), "strategy": config.strategy, **options}
    if isinstance(config, TrainConfig):
        return config.model_dump(exclude_unset=True)
    return dict(config)


def strategy_label(config: ResolvedRun) -> str:
    """A short readable name of what makes a run strategic (the report's label for it alone)."""
    from assist.report.keys import strategy_labels

    return strategy_labels({"run": config.flat(mode="json")})["run"]


def apply_threads(config: Union[ResolvedRun, TrainConfig]) -> None:
    """``num_threads`` is process-wide, so the entry points apply it (the CLI, ``train``, sweep
    workers), never a Trainer."""
    if config.num_threads:
        import torch

        cores = os.cpu_count() or 1
        if config.num_threads > cores:   # more threads than cores only thrash (the config is kept as is)
            warnings.warn(f"num_threads={config.num_threads} is more than the {cores} cores here; using {cores}")
        torch.set_num_threads(min(config.num_threads, cores))


__all__ = ["Comparison", "ResolvedRun", "RunResult", "TrainConfig", "compare", "config_hash", "load_data", "make_config",
           "run_name", "strategy_label", "train", "DataError"]
