"""The trainer's hook points fire in a fixed, documented order."""

import pytest

from assist.api import make_config
from assist.events import Callback, EventRecorder
from assist.engine.trainer import Trainer


def run_events(toy_data, **overrides):
    config = make_config({"model": "fcnet16", "epochs": 2, "batch_size": 64, **overrides})
    recorder = EventRecorder()
    Trainer(config, toy_data, callbacks=[recorder]).fit()
    return recorder.events


def test_archetype_event_order(toy_data):
    events = run_events(toy_data)
    batch = ["batch_start", "batch_selected", "step_end", "batch_end"]
    epoch = ["epoch_start", "epoch_planned", *batch * 3, "epoch_trained", "epoch_end"]
    assert events == ["train_start", *epoch * 2, "train_end"]


def test_batchwise_scores_before_selecting(toy_data):
    events = run_events(toy_data, strategy="batchwise", filter="none", selector="top_k", select_k=32,
                        accumulation_batch_size=64, batch_size=32)
    # top-32 of each raw batch of 64: one step per raw batch (the last raw batch has 64 too)
    batch = ["batch_start", "batch_scored", "batch_selected", "step_end", "batch_end"]
    epoch = ["epoch_start", "epoch_planned", *batch * 3, "epoch_trained", "epoch_end"]
    assert events == ["train_start", *epoch * 2, "train_end"]


def test_misspelt_hook_is_rejected():
    with pytest.raises(TypeError, match="on_epoch_ends"):
        class Broken(Callback):  # noqa: F841
            def on_epoch_ends(self, trainer, **info):
                pass
