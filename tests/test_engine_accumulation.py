"""Batch accumulation bookkeeping (Algorithm 10): exact batch sizes, overflow, starved epochs."""

import torch

from assist.api import make_config
from assist.engine.accumulate import BatchAccumulator, Chunk
from assist.events import Callback
from assist.engine.trainer import Trainer
from assist.strategies import LoopNeeds, RunSetup, Selection, Strategy, StrategyParams


def chunk(n, start=0):
    idx = torch.arange(start, start + n)
    return Chunk(x=idx.float().unsqueeze(1), y=idx % 3, indices=idx, weights=None)


def test_accumulator_discards_overflow():
    acc = BatchAccumulator(batch_size=5, overflow="discard")
    acc.add(chunk(3))
    assert not acc.ready()
    acc.add(chunk(4, start=3))
    batch, discarded = acc.pop()
    assert batch.indices.tolist() == [0, 1, 2, 3, 4]
    assert discarded == 2 and acc.size == 0


def test_accumulator_carries_overflow():
    acc = BatchAccumulator(batch_size=5, overflow="carry")
    acc.add(chunk(12))
    first, d1 = acc.pop()
    second, d2 = acc.pop()
    assert (d1, d2) == (0, 0)
    assert first.indices.tolist() == [0, 1, 2, 3, 4] and second.indices.tolist() == [5, 6, 7, 8, 9]
    assert acc.size == 2 and not acc.ready()
    assert acc.pop_partial().indices.tolist() == [10, 11]


def test_accumulator_state_round_trip():
    acc = BatchAccumulator(batch_size=8)
    acc.add(chunk(3))
    restored = BatchAccumulator(batch_size=8)
    restored.load_state_dict(acc.state_dict())
    assert restored.size == 3 and restored.pop_partial().indices.tolist() == [0, 1, 2]


class AcceptFirst(Strategy):
    """Accepts exactly `per_batch` samples of every raw batch (a deterministic filter)."""

    name = "accept_first"

    def __init__(self, config, per_batch):
        super().__init__(StrategyParams(), RunSetup.from_config(config))
        self.config = config
        self.per_batch = per_batch

    def needs(self):
        return LoopNeeds(scores=True, accumulate=True, overflow=self.config.overflow,
                         starved_epoch=self.config.starved_epoch)

    def raw_batch_size(self):
        return self.config.accumulation_batch_size or self.config.batch_size

    def select(self, batch, scores, ctx):
        return Selection(keep=torch.arange(min(self.per_batch, len(batch))))


class StepSizes(Callback):
    def __init__(self):
        self.sizes = []

    def on_step_end(self, trainer, *, batch_size, **info):
        self.sizes.append(batch_size)


def run(toy_data, per_batch, **overrides):
    config = make_config({"model": "fcnet8", "epochs": 3, "batch_size": 16, "accumulation_batch_size": 32,
                          "strategy": "batchwise", **overrides})
    sizes = StepSizes()
    state = Trainer(config, toy_data, strategy=AcceptFirst(config, per_batch), callbacks=[sizes]).fit()
    return state, sizes.sizes


def test_exact_batch_sizes_and_overflow(toy_data):
    # 192 samples -> 6 raw batches of 32 per epoch; 10 accepted each -> 60 per epoch.
    state, sizes = run(toy_data, per_batch=10)
    assert set(sizes) == {16}
    first = state.history[0]
    # buffer: 10, 20 -> step (discard 4), 10, 20 -> step (4), 10, 20 -> step (4)
    assert first["steps"] == 3 and first["overflow_discarded"] == 12
    assert first["raw_batches"] == 6 and first["raw_batches_per_step"] == 2.0
    assert first["acceptance_ratio"] == 10 / 32
    assert first["samples_scored"] == 192 and first["samples_trained"] == 48
    assert first["starved"] is False


def test_carry_overflow_keeps_samples(toy_data):
    state, sizes = run(toy_data, per_batch=10, overflow="carry")
    assert set(sizes) == {16}
    first = state.history[0]
    assert first["overflow_discarded"] == 0
    assert first["steps"] == 60 // 16 and first["buffered"] == 60 % 16


def test_epochs_without_steps_keep_the_buffer(toy_data):
    # 1 accepted per raw batch -> 6 per epoch < 16: steps only when the buffer fills across epochs
    state, sizes = run(toy_data, per_batch=1, epochs=4)
    steps = [row["steps"] for row in state.history]
    # buffer 6, 12, then the 4th raw batch of epoch 3 makes 16 -> one step, 2 more arrive after
    assert steps == [0, 0, 1, 0]
    assert all(row["starved"] for row in state.history)
    assert [row["buffered"] for row in state.history] == [6, 12, 2, 8]
    assert state.history[2]["overflow_discarded"] == 0
    assert state.history[0]["raw_batches_per_step"] is None
    assert state.status == "completed"


def test_starved_policy_partial_trains_on_what_it_has(toy_data):
    state, sizes = run(toy_data, per_batch=1, epochs=2, starved_epoch="partial")
    assert sizes == [6, 6]


def test_starved_policy_fill_random_trains_full_batches(toy_data):
    state, sizes = run(toy_data, per_batch=1, epochs=2, starved_epoch="fill_random")
    assert sizes == [16, 16]


def test_starved_policy_stop_ends_as_converged(toy_data):
    state, _ = run(toy_data, per_batch=1, epochs=5, starved_epoch="stop")
    assert state.epoch == 1 and state.status == "completed"
    assert state.reason.startswith("converged")
