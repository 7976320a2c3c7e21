"""The thesis's selection rules as its text describes them (docs/thesis.md): Algorithm 6,
the fills, the Figure 6 statistics, the adaptive raw batch size and q-split's decaying power."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from assist.api import make_config
from assist.config import ConfigError
from assist.engine.trainer import Trainer
from assist.integration import IndexedDataset, Selector
from assist.strategies import (LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext,
                               StrategyParams, build_strategy)
from assist.strategies.filtering import adaptive_raw_batch_size, scheduled_power


def context(n: int = 4) -> StrategyContext:
    return StrategyContext(num_samples=n, batch_size=4, epochs=1, shuffle_generator=torch.Generator(),
                           select_generator=torch.Generator().manual_seed(0), score_indices=None)


def test_soft_filter_with_top_k_is_algorithm_6():
    """Top-k of the misclassified, then every correct sample within the margin, appended."""
    margin_logit = math.log(0.5125 / 0.4875)       # top-two softmax margin 0.025
    logits = torch.tensor([[0.0, 5.0, -9.0],        # misclassified, high loss
                           [1.0, 1.2, -9.0],        # misclassified, lower loss
                           [margin_logit, 0.0, -20.0],  # correct, margin 0.025 <= 0.1
                           [5.0, 0.0, 0.0]])        # correct, confident
    labels = torch.zeros(4, dtype=torch.long)
    scores = Scores(logits, F.cross_entropy(logits, labels, reduction="none"))
    strategy = build_strategy(make_config({"strategy": "batchwise", "filter": "soft", "soft_margin": 0.1,
                                           "selector": "top_k", "select_k": 1}))
    batch = RawBatch(torch.arange(4), torch.zeros(4, 1), labels)
    assert strategy.select(batch, scores, context()).keep.tolist() == [0, 2]


def identity_data(n: int = 40, wrong=(4, 17, 30)):
    """Inputs that are their own logits: exactly ``wrong`` are misclassified."""
    y = torch.arange(n) % 2
    x = F.one_hot(y, 2).float() * 10
    x[list(wrong)] = x[list(wrong)].flip(1)
    return IndexedDataset(TensorDataset(x, y))


@pytest.mark.parametrize("options", [
    {"strategy": "batchwise"},                              # accumulation: the buffer is filled
    {"strategy": "batchwise", "batch_accumulation": False},  # Algorithm 9
    {"strategy": "epochwise"},                              # Algorithm 8
], ids=["accumulation", "unstable", "epochwise"])
def test_fill_random_completes_one_batch_without_replacement(options):
    data = identity_data()
    selector = Selector(dataset=data, batch_size=8, model=torch.nn.Identity(), starved_epoch="fill_random",
                        seed=3, **options)
    loader = DataLoader(data, batch_size=8, sampler=selector.epoch_sampler())
    batches = list(selector.batches(loader))
    trained = torch.cat([b.indices for b in batches])
    assert len(set(trained.tolist())) == len(trained) == 8      # one batch's worth, no sample twice
    assert {4, 17, 30} <= set(trained.tolist())              # what passed, then 5 distinct others
    filler = batches[-1].indices.tolist()
    assert len(filler) == (8 if "batch_accumulation" not in options and options["strategy"] == "batchwise" else 5)


class KeepFirst(Strategy):
    """Keeps the first ``per_batch`` samples of each raw batch (acceptance known in advance)."""

    name = "keep_first"

    def __init__(self, config, per_batch):
        super().__init__(StrategyParams(), RunSetup.from_config(config))
        self.config, self.per_batch = config, per_batch

    def needs(self):
        return LoopNeeds(scores=True, accumulate=True, starved_epoch="wait")

    def raw_batch_size(self):
        return self.config.accumulation_batch_size or self.config.batch_size

    def select(self, batch, scores, ctx):
        return Selection(keep=torch.arange(min(self.per_batch, len(batch))))


def test_figure_6_counts_a_batch_that_spans_epochs(toy_data):
    # 192 samples, raw batches of 32 (6 per epoch), one sample kept from each: the first batch of
    # 16 completes in the 4th raw batch of epoch 3, having consumed 16 raw batches of 3 epochs
    config = make_config({"model": "fcnet16", "epochs": 4, "batch_size": 16, "accumulation_batch_size": 32,
                          "strategy": "batchwise"})
    history = Trainer(config, toy_data, strategy=KeepFirst(config, 1)).fit().history
    assert [r["raw_batches_per_batch_mean"] for r in history] == [6, 12, 16, 8]   # open batch: a lower bound
    assert [r["raw_batches_per_batch_max"] for r in history] == [6, 12, 16, 8]
    assert [r["overflow_per_batch"] for r in history] == [None, None, 0, None]
    assert [r["steps"] for r in history] == [0, 0, 1, 0]
    assert history[2]["trained_share"] == 16 / 192 and history[0]["trained_share"] == 0
    # the old epoch quotient cannot exceed the epoch's raw batches and is empty without a step
    assert [r["raw_batches_per_step"] for r in history] == [None, None, 6, None]
    # with 5 kept of 32, discarding the overflow: 4 raw batches and 4 discarded samples per batch
    history = Trainer(config, toy_data, strategy=KeepFirst(config, 5)).fit().history
    assert all(r["raw_batches_per_batch_max"] == 4 and r["overflow_per_batch"] == 4 for r in history)
    assert history[1]["raw_batches_per_batch_mean"] == 4          # the batch 5,6 | 7,8 spans epochs 1-2


def test_epochwise_reports_the_filters_pass_rate(toy_data):
    history = Trainer(make_config({"strategy": "epochwise", "model": "fcnet16", "epochs": 2, "batch_size": 16}),
                      toy_data).fit().history
    for row in history:
        assert row["acceptance_ratio"] == row["epoch_filter_passed"] / toy_data.num_train < 1
        assert row["trained_share"] == row["samples_trained"] / row["samples_scored"]


def test_adaptive_raw_batch_size_rule():
    assert adaptive_raw_batch_size(16, None, 256) == 16          # nothing seen yet
    assert adaptive_raw_batch_size(16, 0.5, 256) == 44           # (16 + 2 sqrt(16 * 0.5)) / 0.5
    # (16 + 2 sqrt(16 * 0.99)) / 0.01 = 2396 samples: 10 raw batches of at most 256, evenly 240
    assert adaptive_raw_batch_size(16, 0.01, 256) == 240
    assert adaptive_raw_batch_size(16, 0.0, 256) <= 256          # bounded above
    assert adaptive_raw_batch_size(16, 1.0, 256) == 16           # bounded below


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_auto_raw_batch_size_is_bounded_deterministic_and_resumes(toy_data):
    values = {"strategy": "batchwise", "model": "fcnet16", "epochs": 4, "batch_size": 8,
              "accumulation_batch_size": "auto", "accumulation_batch_size_max": 64, "data_augmentation": False}
    whole = Trainer(make_config(values), toy_data)
    history = whole.fit().history
    for row in history:  # (an epoch's last raw batch is what is left of the plan, so min may be smaller)
        assert 8 <= row["raw_batch_size_mean"] and row["raw_batch_size_max"] <= 64
    assert history[-1]["raw_batch_size_max"] > 8                 # it adapted
    assert [r["raw_batch_size_mean"] for r in Trainer(make_config(values), toy_data).fit().history] == \
        [r["raw_batch_size_mean"] for r in history]
    first = Trainer(make_config(values), toy_data)
    first.run_epoch(1, 0.0)
    first.run_epoch(2, 0.0)
    state = roundtrip(first.state_dict())
    assert state["strategy"]["acceptance"] is not None
    resumed = Trainer(make_config(values), toy_data)
    resumed.load_state_dict(state)
    resumed.fit()
    for expected, got in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(expected, got)
    assert [r["raw_batch_size_mean"] for r in resumed.state.history] == [r["raw_batch_size_mean"] for r in history]


def test_auto_is_refused_where_it_means_nothing():
    with pytest.raises(ConfigError, match="accumulation_batch_size='auto' is for batchwise filtering only"):
        make_config({"strategy": "selective_backprop", "accumulation_batch_size": "auto"})
    with pytest.raises(ConfigError, match="accumulation_batch_size_max has no effect"):
        make_config({"strategy": "batchwise", "accumulation_batch_size_max": 64})
    with pytest.raises(ConfigError, match="accumulation_batch_size"):
        make_config({"strategy": "batchwise", "accumulation_batch_size": "often"})


def test_qsplit_power_decays_on_a_schedule():
    assert scheduled_power(3.0, None, "linear", 5, 10) == 3.0
    assert [scheduled_power(3.0, 1.0, "linear", e, 5) for e in (1, 3, 5)] == [3.0, 2.0, 1.0]
    assert scheduled_power(3.0, 1.0, "cosine", 1, 5) == 3.0 and scheduled_power(3.0, 1.0, "cosine", 5, 5) == 1.0
    assert scheduled_power(3.0, 1.0, "cosine", 2, 5) > scheduled_power(3.0, 1.0, "linear", 2, 5)
    strategy = build_strategy(make_config({"strategy": "batchwise", "filter": "none", "selector": "q_split",
                                           "select_k": 4, "select_p": 3.0, "select_p_end": 1.0, "epochs": 3}))
    ctx = StrategyContext(num_samples=8, batch_size=4, epochs=3, shuffle_generator=torch.Generator(),
                          select_generator=torch.Generator(), score_indices=None)
    powers = []
    for epoch in (1, 2, 3):
        strategy.plan_epoch(epoch, ctx)
        powers.append(strategy.rule.power)
    assert powers == [3.0, 2.0, 1.0]
    with pytest.raises(ConfigError, match="select_p_end"):
        make_config({"strategy": "batchwise", "select_p_end": 1.0})


def test_epoch_and_batch_levels_may_filter_differently(toy_data):
    config = make_config({"strategy": "epoch_batchwise", "model": "fcnet16", "epochs": 2, "batch_size": 16,
                          "epoch_filter": "soft", "epoch_soft_margin": 0.3, "filter": "hard",
                          "selector": "top_k", "select_k": 8, "epoch_selector": "none"})
    strategy = build_strategy(config)
    assert (strategy.epochwise.rule.filter, strategy.epochwise.rule.margin, strategy.epochwise.rule.selector) == \
        ("soft", 0.3, None)
    assert (strategy.rule.filter, strategy.rule.selector) == ("hard", "top_k")
    history = Trainer(config, toy_data).fit().history
    same = Trainer(make_config({"strategy": "epoch_batchwise", "model": "fcnet16", "epochs": 2, "batch_size": 16,
                                "selector": "top_k", "select_k": 8}), toy_data).fit().history
    # the soft epoch filter passes at least what the hard one does, before any batch is trained
    assert history[0]["epoch_filter_passed"] >= same[0]["epoch_filter_passed"]
    with pytest.raises(ConfigError, match="epoch level: selector='top_k' needs select_k"):
        make_config({"strategy": "epoch_batchwise", "epoch_selector": "top_k"})
    with pytest.raises(ConfigError, match="epoch_filter='soft': no effect for strategy 'batchwise'"):
        make_config({"strategy": "batchwise", "epoch_filter": "soft"})


def test_qsplit_short_bucket_shares_its_shortfall_unless_literal():
    """Algorithm 4 draws k/q from each bucket; a bucket holding fewer gives what it has. The
    default hands the shortfall to the other buckets; quota=literal is the printed rule."""
    from assist.selection import loss_qsplit_random, split_quota

    assert split_quota(6, [1, 10]) == [1, 5]
    assert split_quota(6, [1, 10], "literal") == [1, 3]
    assert split_quota(7, [10, 10], "literal") == [3, 4]          # the remainder to the top bucket
    with pytest.raises(ValueError, match="quota"):
        split_quota(6, [1, 10], "other")
    losses = torch.tensor([0.1] * 10 + [9.0])                     # one dominant sample: a bucket of one
    g = torch.Generator().manual_seed(0)
    assert loss_qsplit_random(losses, 6, 2, 2.0, g).numel() == 6
    literal = loss_qsplit_random(losses, 6, 2, 2.0, g, quota="literal")
    assert literal.numel() == 4 and 10 in literal.tolist()


def test_fill_random_is_on_where_the_thesis_filled_and_stored_resolved():
    """"Defaulting back to SGD" (3.2.1) is the default wherever a count selector asks for k;
    elsewhere fill_random resolves to false, the value every earlier run directory stored."""
    from assist.api import config_hash

    with_k = make_config({"batch_filtering": True, "selector": "top_k", "select_k": 8})
    assert with_k.fill_random is True and with_k.model_dump()["fill_random"] is True
    assert make_config({"batch_filtering": True, "selector": "top_k", "select_k": 8,
                        "fill_random": False}).fill_random is False
    for values in ({}, {"batch_filtering": True}, {"strategy": "infobatch"}):
        config = make_config(values)
        assert config.fill_random is False
        # a run directory written when the default was false stored it so: same identity
        assert config_hash(make_config({**values, "fill_random": False})) == config_hash(config)
    from assist.validation import twin_config, validate_run

    validate_run({"strategy": "infobatch"})                        # resolved false is not "set"
    assert twin_config(validate_run({"batch_filtering": True, "selector": "top_k", "select_k": 8})).fill_random is False
    with pytest.raises(ConfigError, match="fill_random=True has no effect without select_k"):
        validate_run({"batch_filtering": True, "fill_random": True})
