"""The trainer's hook points fire in a fixed, documented order."""

import io

import pytest
import torch

from assist.api import make_config
from assist.engine.callbacks import ProgressReporter
from assist.events import Callback, EventRecorder
from assist.engine.trainer import Trainer
from assist.strategies import LoopNeeds, RunSetup, Selection, Strategy, StrategyParams


def run_events(toy_data, **overrides):
    config = make_config({"model": "fcnet16", "epochs": 2, "batch_size": 64, **overrides})
    recorder = EventRecorder()
    Trainer(config, toy_data, callbacks=[recorder]).fit()
    return recorder.events


def test_archetype_event_order(toy_data):
    events = run_events(toy_data)
    batch = ["batch_start", "batch_selected", "step_end", "batch_end"]
    # evaluation: one batch of the train split, one of the test split (eval_batch_size 1024)
    epoch = ["epoch_start", "epoch_planned", *batch * 3, "epoch_trained", "eval_batch", "eval_batch", "epoch_end"]
    assert events == ["train_start", *epoch * 2, "train_end"]


def test_batchwise_scores_before_selecting(toy_data):
    events = run_events(toy_data, strategy="batchwise", filter="none", selector="top_k", select_k=32,
                        accumulation_batch_size=64, batch_size=32)
    # top-32 of each raw batch of 64: one step per raw batch (the last raw batch has 64 too)
    batch = ["batch_start", "batch_scored", "batch_selected", "step_end", "batch_end"]
    epoch = ["epoch_start", "epoch_planned", *batch * 3, "epoch_trained", "eval_batch", "eval_batch", "epoch_end"]
    assert events == ["train_start", *epoch * 2, "train_end"]


def test_misspelt_hook_is_rejected():
    with pytest.raises(TypeError, match="on_epoch_ends"):
        class Broken(Callback):  # noqa: F841
            def on_epoch_ends(self, trainer, **info):
                pass


# ---------------------------------------------------------------- every path that trains, with arguments
class Recorder(Callback):
    """Every hook call with the arguments a test can check."""

    def __init__(self):
        self.calls = []

    def on_train_start(self, trainer, **info): self.calls.append(("train_start",))
    def on_epoch_start(self, trainer, *, epoch, **info): self.calls.append(("epoch_start", epoch))
    def on_epoch_planned(self, trainer, *, epoch, plan, **info): self.calls.append(("epoch_planned", epoch, len(plan)))
    def on_batch_start(self, trainer, *, indices, **info): self.calls.append(("batch_start", len(indices)))
    def on_batch_scored(self, trainer, *, batch, scores, **info):
        assert scores.logits.shape[0] == len(batch) == scores.losses.shape[0]
        self.calls.append(("batch_scored", len(batch)))
    def on_batch_selected(self, trainer, *, batch, selection, **info):
        self.calls.append(("batch_selected", len(batch), len(selection)))
    def on_step_end(self, trainer, *, batch_size, loss, **info): self.calls.append(("step_end", batch_size))
    def on_batch_end(self, trainer, *, indices, **info): self.calls.append(("batch_end", len(indices)))
    def on_epoch_trained(self, trainer, *, epoch, starved, **info): self.calls.append(("epoch_trained", epoch, starved))
    def on_epoch_end(self, trainer, *, epoch, metrics, **info):
        assert metrics["epoch"] == epoch
        self.calls.append(("epoch_end", epoch))
    def on_train_end(self, trainer, *, status, reason, **info): self.calls.append(("train_end", status))


class KeepFirst(Strategy):
    """Scores every raw batch and keeps its first ``per_batch`` samples: a filter whose
    acceptance is known in advance, so the expected event stream can be written down."""

    name = "keep_first"

    def __init__(self, config, per_batch):
        super().__init__(StrategyParams(), RunSetup.from_config(config))
        self.config, self.per_batch = config, per_batch

    def needs(self):
        return LoopNeeds(scores=True, accumulate=True, starved_epoch=self.config.starved_epoch)

    def raw_batch_size(self):
        return self.config.accumulation_batch_size or self.config.batch_size

    def select(self, batch, scores, ctx):
        return Selection(keep=torch.arange(min(self.per_batch, len(batch))))


def record(toy_data, build=None, **overrides):
    config = make_config({"model": "fcnet16", "epochs": 2, "batch_size": 64, **overrides})
    recorder = Recorder()
    Trainer(config, toy_data, callbacks=[recorder], strategy=build(config) if build else None).fit()
    return recorder.calls


def expected_accumulation(epochs, raw_batches, raw, per_batch, batch_size, policy="wait"):
    """The event stream of KeepFirst with discarded overflow, worked out by hand."""
    calls, buffered = [("train_start",)], 0
    for epoch in range(1, epochs + 1):
        calls += [("epoch_start", epoch), ("epoch_planned", epoch, raw * raw_batches)]
        accepted = 0
        for _ in range(raw_batches):
            calls += [("batch_start", raw), ("batch_scored", raw), ("batch_selected", raw, per_batch)]
            buffered += per_batch
            accepted += per_batch
            if buffered >= batch_size:
                calls.append(("step_end", batch_size))
                buffered = 0   # the overflow is discarded
            calls.append(("batch_end", raw))
        starved = accepted < batch_size
        if starved and policy == "partial" and buffered:
            calls += [("batch_start", buffered), ("step_end", buffered), ("batch_end", buffered)]
            buffered = 0
        if starved and policy == "fill_random":
            calls += [("batch_start", batch_size), ("step_end", batch_size), ("batch_end", batch_size)]
            buffered = 0
        calls += [("epoch_trained", epoch, starved), ("epoch_end", epoch)]
        if starved and policy == "stop":
            break
    return calls + [("train_end", "completed")]


def test_epochwise_events_and_arguments(toy_data):
    calls = record(toy_data, epochs=1, strategy="epochwise", batch_size=16)
    planned = calls[2]
    assert calls[:2] == [("train_start",), ("epoch_start", 1)] and planned[0] == "epoch_planned"
    passed, sizes = planned[2], [16] * (planned[2] // 16) + ([planned[2] % 16] if planned[2] % 16 else [])
    body = [c for n in sizes for c in (("batch_start", n), ("batch_selected", n, n), ("step_end", n), ("batch_end", n))]
    assert calls[3:-3] == body and passed < toy_data.num_train
    assert calls[-3:] == [("epoch_trained", 1, False), ("epoch_end", 1), ("train_end", "completed")]


def test_accumulation_spanning_raw_batches_and_epochs(toy_data):
    # 192 samples in raw batches of 32: 6 per epoch, 5 kept each -> a batch of 16 every 4th raw batch
    # (overflow 4 discarded), so the 2nd batch gathers raw batches 5-6 of epoch 1 and 1-2 of epoch 2
    calls = record(toy_data, lambda c: KeepFirst(c, 5), epochs=3, batch_size=16, accumulation_batch_size=32,
                   strategy="batchwise")
    assert calls == expected_accumulation(3, 6, 32, 5, 16)
    steps = [i for i, c in enumerate(calls) if c[0] == "step_end"]
    epoch_two = calls.index(("epoch_start", 2))
    assert len(steps) == 4 and epoch_two < steps[1] < calls.index(("epoch_start", 3))


@pytest.mark.parametrize("policy", ["wait", "partial", "fill_random", "stop"])
def test_starved_epoch_policies_train_inside_the_event_frame(policy, toy_data):
    # 6 raw batches of 32, one sample kept from each: every epoch accepts 6 < 16 (starved)
    calls = record(toy_data, lambda c: KeepFirst(c, 1), epochs=2, batch_size=16, accumulation_batch_size=32,
                   strategy="batchwise", starved_epoch=policy)
    assert calls == expected_accumulation(2, 6, 32, 1, 16, policy)


# ---------------------------------------------------------------- evaluation progress
class EvalRecorder(Callback):
    def __init__(self):
        self.calls = []

    def on_eval_batch(self, trainer, *, split, done, total, **info):
        self.calls.append((split, done, total))


def test_evaluation_reports_each_batch_of_each_split(toy_data):
    recorder = EvalRecorder()
    config = make_config({"model": "fcnet16", "epochs": 2, "batch_size": 64, "eval_batch_size": 50,
                          "train_eval_every": 2})
    Trainer(config, toy_data, callbacks=[recorder]).fit()
    train, test = toy_data.num_train, int(toy_data.test_labels.shape[0])
    assert (train, test) == (192, 64)
    # epoch 1 evaluates the test split only (train_eval_every=2), epoch 2 both
    assert recorder.calls == [("test", 50, 64), ("test", 64, 64),
                              ("train", 50, 192), ("train", 100, 192), ("train", 150, 192), ("train", 192, 192),
                              ("test", 50, 64), ("test", 64, 64)]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_shows_the_evaluation_and_keeps_the_epoch_lines(toy_data):
    """On a terminal the bar, full after training, goes on through the evaluation of each split
    (its name, samples evaluated out of the split's); each finished epoch still leaves its line."""
    stream = Terminal()
    config = make_config({"model": "fcnet16", "epochs": 2, "batch_size": 64, "eval_batch_size": 50})
    Trainer(config, toy_data, callbacks=[ProgressReporter(stream, label="archetype")]).fit()
    screens = stream.getvalue().replace("\r", "\n").splitlines()
    evaluating = [line for line in screens if "evaluating" in line]
    assert any(line.startswith("archetype epoch 1/2 evaluating train:") and "/192" in line for line in evaluating)
    assert any(line.startswith("archetype epoch 2/2 evaluating test:") and "/64" in line for line in evaluating)
    finished = [line for line in screens if line.startswith("[archetype] epoch")]
    assert [line.split()[2] for line in finished] == ["1/2", "2/2"] and "test acc" in finished[0]
    # not a terminal: only the finished-epoch lines, no bar
    plain = io.StringIO()
    Trainer(config, toy_data, callbacks=[ProgressReporter(plain, label="archetype")]).fit()
    assert "evaluating" not in plain.getvalue() and len(plain.getvalue().splitlines()) == 2
