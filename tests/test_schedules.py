"""Learning-rate schedules by the share of training done, label smoothing and clipping."""

from __future__ import annotations

import math

import pytest
import torch

from assist.api import make_config
from assist.config import ConfigError
from assist.engine.schedule import learning_rate, schedule_factor, warmup_factor
from assist.engine.trainer import Trainer
from assist.events import Callback


def test_closed_forms():
    assert schedule_factor("cosine", 0.0, base=0.1, floor=0.001) == 1.0
    assert schedule_factor("cosine", 1.0, base=0.1, floor=0.001) == pytest.approx(0.01)
    assert schedule_factor("cosine", 0.5, base=0.1, floor=0.0) == pytest.approx(0.5)
    assert schedule_factor("linear", 0.25, base=0.1, floor=0.0) == pytest.approx(0.75)
    assert schedule_factor("onecycle", 0.0, base=1, floor=0, start=0.04, end=1e-4, peak_at=0.3) == pytest.approx(0.04)
    assert schedule_factor("onecycle", 0.3, base=1, floor=0, start=0.04, end=1e-4, peak_at=0.3) == pytest.approx(1.0)
    assert schedule_factor("onecycle", 1.0, base=1, floor=0, start=0.04, end=1e-4, peak_at=0.3) == pytest.approx(1e-4)
    assert warmup_factor(0.05, 1.0, 10) == pytest.approx(0.5) and warmup_factor(0.2, 1.0, 10) == 1.0


class LearningRates(Callback):
    def __init__(self):
        self.rates = []

    def on_step_end(self, trainer, **info):
        self.rates.append((trainer.progress, trainer.optimizer.param_groups[0]["lr"]))


def rates(toy_data, **values):
    config = make_config({"model": "fcnet16", "epochs": 4, "batch_size": 16, "learning_rate": 0.1, **values})
    recorder = LearningRates()
    history = Trainer(config, toy_data, callbacks=[recorder]).fit().history
    return config, recorder.rates, history


@pytest.mark.parametrize("strategy", [
    {}, {"strategy": "infobatch", "strategy_options": {"delta": 0.75}}, {"strategy": "batchwise", "accumulation_batch_size": 48},
], ids=["archetype", "infobatch", "batchwise"])
def test_every_step_gets_the_schedule_of_its_progress(toy_data, strategy):
    config, seen, history = rates(toy_data, lr_scheduler="cosine", min_learning_rate=0.001, warmup_epochs=0.5,
                                  **strategy)
    assert len(seen) == sum(r["steps"] for r in history) > 0
    for progress, lr in seen:
        expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * progress)) / 2
        expected *= min(1.0, progress * 4 / 0.5)
        assert lr == pytest.approx(expected)
        assert 0 <= progress < 1
    # shorter epochs (pruning, filtering) do not end the schedule early: a step of the last epoch
    # is scheduled as late in the run (near the floor); an epoch without steps consumes schedule too
    if history[-1]["steps"]:
        assert seen[-1][0] > 0.75 and seen[-1][1] < 0.02
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


def test_onecycle_peaks_where_asked(toy_data):
    _, seen, _ = rates(toy_data, lr_scheduler="onecycle", onecycle_peak_at=0.5)
    peak = max(seen, key=lambda item: item[1])
    assert abs(peak[0] - 0.5) < 0.1 and peak[1] == pytest.approx(0.1 * schedule_factor(
        "onecycle", peak[0], base=0.1, floor=0, start=0.04, end=1e-4, peak_at=0.5))
    assert seen[0][1] == pytest.approx(0.1 * 0.04)


def test_adamw_label_smoothing_and_clipping_reach_the_step(toy_data):
    base = {"model": "fcnet16", "epochs": 1, "batch_size": 16, "learning_rate": 0.01, "optimizer": "adamw",
            "data_augmentation": False}
    trainer = Trainer(make_config(base), toy_data)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    plain = Trainer(make_config(base), toy_data)
    plain.fit()
    smooth = Trainer(make_config({**base, "label_smoothing": 0.2}), toy_data)
    smooth.fit()
    clipped = Trainer(make_config({**base, "grad_clip_norm": 1e-3}), toy_data)
    clipped.fit()
    differs = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    assert differs(plain, smooth) and differs(plain, clipped)
    # smoothing trains differently, but strategies still see plain cross-entropy
    seen = []

    class Spy(Callback):
        def on_step_end(self, trainer, *, loss, **info):
            seen.append(float(loss))

    strategy_losses = []
    spied = Trainer(make_config({**base, "label_smoothing": 0.2, "strategy": "infobatch"}), toy_data, callbacks=[Spy()])
    original = spied.strategy.feedback
    spied.strategy.feedback = lambda i, losses, logits, labels: (strategy_losses.append(
        (losses, torch.nn.functional.cross_entropy(logits, labels, reduction="none"))), original(i, losses, logits, labels))
    spied.fit()
    assert all(torch.allclose(got, want) for got, want in strategy_losses)


@pytest.mark.parametrize("values, message", [
    ({"lr_scheduler": "multistep", "warmup_epochs": 1}, "warmup_epochs works with"),
    ({"min_learning_rate": 0.01}, "min_learning_rate has no effect"),
    ({"lr_scheduler": "cosine", "min_learning_rate": 0.5, "learning_rate": 0.1}, "must be below learning_rate"),
    ({"onecycle_peak_at": 0.5}, "no effect without lr_scheduler=onecycle"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"grad_clip_norm": 0}, "grad_clip_norm"),
    ({"lr_scheduler": "cosine", "warmup_epochs": 20, "epochs": 10}, "longer than the run"),
])
def test_bad_recipes_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_learning_rate_function_without_schedule_is_constant():
    config = make_config({"learning_rate": 0.2})
    assert learning_rate(config, 0.0) == learning_rate(config, 0.9) == 0.2


@pytest.mark.parametrize("schedule", [{"lr_scheduler": "multistep", "milestone_every": 2, "gamma": 0.1},
                                      {"lr_scheduler": "exponential", "gamma": 0.5}], ids=["multistep", "exponential"])
def test_the_recorded_learning_rate_is_the_one_each_epoch_trained_at(toy_data, schedule):
    """metrics.jsonl's learning_rate is the rate of the epoch's steps, not the next epoch's:
    a multistep run shows its drop at the first epoch that trained at the lower rate."""
    config, seen, history = rates(toy_data, **schedule)
    steps_by_epoch = [r["steps"] for r in history]
    start = 0
    for row, steps in zip(history, steps_by_epoch):
        trained = [lr for _, lr in seen[start:start + steps]]
        start += steps
        assert trained and trained == pytest.approx([row["learning_rate"]] * steps), (row["epoch"], trained)
    expected = ([0.1, 0.1, 0.01, 0.01] if schedule["lr_scheduler"] == "multistep" else [0.1, 0.05, 0.025, 0.0125])
    assert [r["learning_rate"] for r in history] == pytest.approx(expected)
