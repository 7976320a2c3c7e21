"""Every registered strategy runs through the trainer on tiny data, deterministically."""

import math

import pytest
import torch

from assist.metrics.system import system_metrics

from assist.api import make_config
from assist.validation import twin_config
from assist.engine.trainer import Trainer
from assist.models import build_model
from assist.strategies import STRATEGIES

REQUIRED_KEYS = {
    "epoch", "wall_clock_s", "train_time_s", "steps", "samples_scored", "samples_trained",
    "train_accuracy", "test_accuracy", "raw_batches_per_step", "overflow_discarded", "acceptance_ratio",
    "process_rss_mb", "cpu_percent", "cpu_threads",
    *(f"{split}_loss_{s}" for split in ("train", "test") for s in ("mean", "best", "worst", "q50", "q90", "q99")),
}


def config_for(name, **overrides):
    values = {"model": "fcnet16", "epochs": 3, "batch_size": 16, "strategy": name, "learning_rate": 0.05}
    return make_config({**values, **overrides})


SYSTEM = set(system_metrics(torch.device("cpu")))


def deterministic_keys(row):
    """A metrics row without times, system readings and provenance (a cached reference model)."""
    return {k: v for k, v in row.items() if not k.endswith(("_s", "_cached")) and k not in SYSTEM}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_trains_and_records_metrics(name, toy_data):
    state = Trainer(config_for(name), toy_data).fit()
    assert state.status == "completed" and state.epoch == 3
    for row in state.history:
        assert REQUIRED_KEYS <= set(row), REQUIRED_KEYS - set(row)
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["test_loss_best"] <= row["test_loss_q50"] <= row["test_loss_q90"] <= row["test_loss_q99"] <= row["test_loss_worst"]
        assert math.isclose(row["test_loss_mean"], row["test_loss_mean"])  # finite
    assert sum(row["samples_trained"] for row in state.history) > 0


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_is_deterministic_under_its_seed(name, toy_data):
    first = Trainer(config_for(name, rng_seed=3), toy_data).fit().history
    second = Trainer(config_for(name, rng_seed=3), toy_data).fit().history
    assert [deterministic_keys(r) for r in first] == [deterministic_keys(r) for r in second]
    other = Trainer(config_for(name, rng_seed=4), toy_data).fit().history
    assert [deterministic_keys(r) for r in other] != [deterministic_keys(r) for r in first]


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n != "archetype"])
def test_run_and_twin_share_initial_weights_and_first_shuffle(name, toy_data):
    config = config_for(name)
    twin = twin_config(config)
    assert twin.strategy == "archetype" and twin.rng_seed == config.rng_seed
    a, b = build_model(config, toy_data), build_model(twin, toy_data)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    plans = []
    for cfg in (config, twin):
        trainer = Trainer(cfg, toy_data)
        g = trainer.selection.context.shuffle_generator
        plans.append(torch.randperm(toy_data.num_train, generator=g))
    assert torch.equal(plans[0], plans[1])


def test_global_rng_is_untouched(toy_data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    Trainer(config_for("batchwise"), toy_data).fit()
    assert torch.equal(before, torch.get_rng_state())


def test_batchwise_filtering_trains_only_on_misclassified(toy_data):
    seen = []

    class Check(__import__("assist.events", fromlist=["Callback"]).Callback):
        def on_batch_selected(self, trainer, *, batch, selection, **info):
            logits = trainer.model.eval()(batch.x)
            wrong = (logits.argmax(1) != batch.y).nonzero().flatten()
            seen.append(torch.equal(selection.keep.sort().values, wrong))

    Trainer(config_for("batchwise", epochs=1), toy_data, callbacks=[Check()]).fit()
    assert seen and all(seen)


def test_unstable_batch_size_trains_each_filtered_batch(toy_data):
    state = Trainer(config_for("batchwise", batch_accumulation=False), toy_data).fit()
    first = state.history[0]
    assert first["raw_batches_per_step"] is None and first["overflow_discarded"] is None
    assert first["steps"] <= first["raw_batches"] == 192 // 16
    assert first["samples_trained"] == first["accepted"]


def test_epochwise_trains_on_what_passed(toy_data):
    state = Trainer(config_for("epochwise"), toy_data).fit()
    for row in state.history:
        assert row["samples_trained"] == row["epoch_filter_passed"]
        assert row["samples_scored"] == toy_data.num_train


def test_selector_after_filter(toy_data):
    state = Trainer(config_for("batchwise", selector="top_k", select_k=4, fill_random=True,
                               accumulation_batch_size=16, batch_size=8), toy_data).fit()
    # top-4 (filled with random when fewer pass) of each raw batch of 16, accumulated into 8
    assert all(row["accepted"] == 4 * row["raw_batches"] for row in state.history)


def test_train_mode_scoring_is_recorded_and_changes_nothing_else(toy_data):
    state = Trainer(config_for("batchwise", scoring_mode="train"), toy_data).fit()
    assert state.status == "completed"


def test_divergence_marks_run_failed(toy_data):
    state = Trainer(config_for("archetype", learning_rate=1e12, epochs=3), toy_data).fit()
    assert state.status == "failed" and "non-finite loss" in state.reason


def test_epochwise_replay_trains_on_the_view_it_scored(toy_data):
    """With epoch_filter_augmentation=replay the trained view of a sample is the one the
    epochwise filter scored (hard filtering with augmentation)."""
    from assist.events import Callback

    class Capture(Callback):
        def __init__(self):
            self.scored, self.trained = {}, {}

        def on_batch_selected(self, trainer, *, batch, **info):
            for i, x in zip(batch.indices.tolist(), batch.x):
                self.trained[i] = x.clone()

    def run(mode):
        config = config_for("epochwise", epochs=1, data_augmentation=True, augmentation_recipe="light",
                            epoch_filter_augmentation=mode)
        capture = Capture()
        trainer = Trainer(config, toy_data, callbacks=[capture])
        original = trainer.selection.scorer.score_indices

        def recording(indices):
            for i in indices.tolist():
                capture.scored[i] = trainer.fetch(indices[indices == i])[0][0].clone()
            return original(indices)

        trainer.selection.context.score_indices = recording
        state = trainer.fit()
        return capture, state

    replay, state = run("replay")
    assert state.history[0]["augmentation_view"] == "replayed"
    assert replay.trained and all(torch.equal(replay.trained[i], replay.scored[i]) for i in replay.trained)
    fresh, state = run("fresh")
    assert state.history[0]["augmentation_view"] == "fresh"
    assert not all(torch.equal(fresh.trained[i], fresh.scored[i]) for i in fresh.trained)
