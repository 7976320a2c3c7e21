"""One selection step, every loop: the built-in trainer and a user's Selector loop over a
DataLoader make the same decisions and end with the same weights, for every registered
strategy (a strategy added to the registry is covered here without a line changed)."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from assist.api import make_config
from assist.data.pipeline import BatchPipeline
from assist.engine.optim import build_optimizer
from assist.engine.trainer import Trainer
from assist.integration import IndexedDataset, Selector
from assist.models import build_model
from assist.strategies import STRATEGIES, strategy_keys

SRC = Path(__file__).resolve().parents[1] / "src" / "assist"
RUN_KEYS = {"epochs", "batch_size", "rng_seed", "strategy", "data_augmentation", "model", "learning_rate"}


def counters(row: dict, full: bool = False) -> dict:
    """A metrics row's selection counters and strategy numbers, without times (``full``: with
    the accumulation statistics and the reused scores)."""
    keys = ("steps", "samples_scored", "samples_trained", "raw_batches", "accepted", "acceptance_ratio",
            "raw_batches_per_step", "overflow_discarded", "buffered")
    if full:
        keys += ("raw_batches_per_batch_mean", "raw_batches_per_batch_max", "overflow_per_batch", "scores_reused")
    picked = {k: row.get(k) for k in keys}
    picked.update({k: v for k, v in row.items() if k.split("_")[0] in ("infobatch", "sb", "rho", "is", "osgd", "divbs",
                                                                      "subset", "epoch") and not k.endswith(("_s", "_cached"))
                   and k not in ("epoch", "epoch_time_s")})
    return picked


def selector_loop(values: dict, data, epochs: int, wrap=None, between=None) -> tuple[torch.nn.Module, list[dict]]:
    """A hand-written loop over a DataLoader with the trainer's model, optimizer and inputs
    (``wrap``: what the training forward goes through, e.g. DistributedDataParallel;
    ``between``: applied to (selector, model, optimizer) after each epoch, the loop goes on
    with what it returns)."""
    config = make_config(values)
    pipeline = BatchPipeline(data.train_images, data.train_labels, data.mean, data.std, augmentation="none")
    x, y = pipeline.batch(torch.arange(data.num_train), None)
    dataset = IndexedDataset(TensorDataset(x, y))
    model = build_model(config, data)
    optimizer = build_optimizer(config, model.parameters())
    options = {k: v for k, v in values.items() if k not in RUN_KEYS}
    selector = Selector(config.strategy, dataset, batch_size=config.batch_size, epochs=epochs,
                        seed=config.rng_seed, data=data, **options)
    stats = []
    for _ in range(epochs):
        loader = DataLoader(selector.dataset, batch_sampler=selector.batch_sampler())
        forward = wrap(model) if wrap is not None else model
        for xb, yb, index, weight in selector.batches(loader, model):
            model.train()
            out = forward(xb)
            losses = F.cross_entropy(out, yb, reduction="none")
            optimizer.zero_grad(set_to_none=True)
            (losses * weight).mean().backward()
            optimizer.step()
            selector.feedback(index, losses, out, yb)
        stats.append(selector.epoch_stats())
        if between is not None:
            selector, model, optimizer = between(selector, model, optimizer)
    return model, stats


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_a_pickled_selector_carries_on_like_the_original(name, toy_data, tmp_path, monkeypatch):
    """What Lightning's ddp_spawn and multiprocessing do to a Selector: copied through pickle
    (with its model and optimizer) after every epoch, it makes the decisions of the original
    and the weights end equal."""
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(tmp_path))
    values = {"strategy": name, "epochs": 3, "batch_size": 16, "rng_seed": 5, "data_augmentation": False,
              "model": "fcnet100", "learning_rate": 0.05}
    model, stats = selector_loop(values, toy_data, epochs=3)
    copied, copied_stats = selector_loop(values, toy_data, epochs=3,
                                         between=lambda *loop: pickle.loads(pickle.dumps(loop)))
    assert [counters(row) for row in copied_stats] == [counters(row) for row in stats]
    for (key, expected), got in zip(model.state_dict().items(), copied.state_dict().values()):
        assert torch.equal(expected, got), f"{name}: parameter {key} differs after the pickled copies"


def resumed_from_state(selector: Selector, model, optimizer):
    """A Selector built afresh with the same arguments and loaded from the original's state,
    as a user's loop resumes from its checkpoint (the state goes through torch.save)."""
    buffer = io.BytesIO()
    torch.save(selector.state_dict(), buffer)
    buffer.seek(0)
    run = selector.config
    fresh = Selector(run.strategy, selector.dataset, batch_size=run.batch_size, epochs=run.epochs,
                     seed=run.rng_seed, data=selector._reference_data, **{k: getattr(run, k) for k in SET_OPTIONS})
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    return fresh, model, optimizer


SET_OPTIONS = ("score_every",)   # the options these tests give a Selector


@pytest.mark.parametrize("score_every", [1, 2])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_a_selector_resumed_from_its_state_carries_on_like_the_original(name, score_every, toy_data, tmp_path,
                                                                        monkeypatch):
    """Resumed from ``state_dict`` after every epoch (the step's whole state: the strategy, the
    batch being gathered and the raw batches it consumed, the score record), a Selector makes
    the decisions of one that ran straight through, and the weights end equal."""
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(tmp_path))
    values = {"strategy": name, "epochs": 3, "batch_size": 16, "rng_seed": 5, "data_augmentation": False,
              "model": "fcnet100", "learning_rate": 0.05, "score_every": score_every}
    model, stats = selector_loop(values, toy_data, epochs=3)
    resumed, resumed_stats = selector_loop(values, toy_data, epochs=3, between=resumed_from_state)
    assert [counters(row, full=True) for row in resumed_stats] == [counters(row, full=True) for row in stats]
    for (key, expected), got in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, got), f"{name}: parameter {key} differs after resuming"


@pytest.mark.parametrize("score_every", [1, 2])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_trainer_and_selector_loop_agree(name, score_every, toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(tmp_path))  # RHO-LOSS's reference-model cache
    # fcnet100 is also the model name a Selector assumes (RHO-LOSS's reference model is one)
    values = {"strategy": name, "epochs": 3, "batch_size": 16, "rng_seed": 5, "data_augmentation": False,
              "model": "fcnet100", "learning_rate": 0.05, "score_every": score_every}
    reference = Trainer(make_config(values), toy_data)
    history = reference.fit().history
    model, stats = selector_loop(values, toy_data, epochs=3)
    for (key, expected), got in zip(reference.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(expected, got), f"{name}: parameter {key} differs from the built-in trainer's"
    assert [counters(row, full=True) for row in history] == [counters(row, full=True) for row in stats]
    assert sum(row["samples_trained"] for row in history) > 0


@pytest.mark.parametrize("extra", [
    {"strategy": "batchwise", "accumulation_batch_size": 48, "starved_epoch": "fill_random"},
    {"strategy": "epoch_batchwise", "filter": "soft", "soft_margin": 0.3, "starved_epoch": "partial"},
    {"strategy": "batchwise", "filter": "none", "selector": "q_split", "select_k": 6, "batch_accumulation": False},
], ids=["fill-random", "soft-partial", "q-split-unstable"])
def test_trainer_and_selector_agree_with_options(extra, toy_data):
    values = {"epochs": 3, "batch_size": 16, "rng_seed": 2, "data_augmentation": False, "model": "fcnet16",
              "learning_rate": 0.05, **extra}
    reference = Trainer(make_config(values), toy_data)
    history = reference.fit().history
    model, stats = selector_loop(values, toy_data, epochs=3)
    for expected, got in zip(reference.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(expected, got)
    assert [counters(row) for row in history] == [counters(row) for row in stats]


def test_only_the_step_calls_a_strategys_decisions():
    """``select(`` / ``plan_epoch(`` / ``.feedback(`` of a strategy are called in one module."""
    pattern = re.compile(r"\bstrategy\.(select|plan_epoch|feedback)\(")
    callers = sorted({path.relative_to(SRC).as_posix() for path in SRC.rglob("*.py")
                      if pattern.search(path.read_text())})
    assert callers == ["engine/step.py"]


def test_config_is_a_leaf():
    text = (SRC / "config.py").read_text()
    assert "assist." not in "".join(line for line in text.splitlines() if "import" in line)


def test_strategy_keys_come_from_the_schemas():
    keys = set(strategy_keys())
    declared = {k for n in STRATEGIES.names() for k in STRATEGIES.resolve(n).Params.model_fields}
    assert keys == declared | {"strategy", "epoch_filtering", "batch_filtering"}
    assert {"filter", "accumulation_batch_size", "strategy_options", "starved_epoch"} <= keys
    assert "learning_rate" not in keys and "eval_batch_size" not in keys


def test_checkpoints_written_before_the_step_still_resume(toy_data):
    """Checkpoints of the first landing lack the step's own entries (counters, epoch, open batch): they load,
    and the run continues to the uninterrupted result."""
    values = {"strategy": "batchwise", "epochs": 4, "batch_size": 16, "accumulation_batch_size": 48,
              "rng_seed": 1, "data_augmentation": False, "model": "fcnet16"}
    whole = Trainer(make_config(values), toy_data)
    whole.fit()
    first = Trainer(make_config(values), toy_data)
    first.run_epoch(1, 0.0)
    first.run_epoch(2, 0.0)
    old = {k: v for k, v in first.state_dict().items()
           if k not in ("counters", "epoch", "open_raw_batches", "epoch_accepted", "torch_threads", "exposure",
                        "world_size")}
    assert set(old) == {"config", "model", "optimizer", "scheduler", "generators", "strategy", "accumulator", "state"}
    resumed = Trainer(make_config(values), toy_data)
    resumed.load_state_dict(old)
    resumed.fit()
    for expected, got in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(expected, got)
    assert [counters(r) for r in resumed.state.history] == [counters(r) for r in whole.state.history]
