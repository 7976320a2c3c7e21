"""The drop-in API: IndexedDataset, Selector and the epoch samplers, in a user's own loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset

from assist.config import ConfigError
from assist.integration import IndexedDataset, Selector


def tensors(n: int = 40, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


# ---------------------------------------------------------------- IndexedDataset
def test_indexed_dataset_returns_the_index_and_composes_with_subset_and_concat():
    a, b = tensors(10, seed=1), tensors(6, seed=2)
    concat = IndexedDataset(ConcatDataset([a, b]))
    x, y, index = concat[12]
    assert index == 12 and torch.equal(x, b[2][0]) and y == b[2][1]
    # wrapping a Subset indexes the subset as the loader sees it ...
    subset = IndexedDataset(Subset(a, [7, 3, 5]))
    assert [subset[i][2] for i in range(3)] == [0, 1, 2] and torch.equal(subset[1][0], a[3][0])
    # ... and a Subset of a wrapped dataset keeps the wrapped dataset's indices
    assert [item[2] for item in Subset(IndexedDataset(a), [7, 3])] == [7, 3]
    batch = next(iter(DataLoader(concat, batch_size=16)))
    assert torch.equal(batch[2], torch.arange(16))


def test_indexed_dataset_rejects_items_that_are_not_pairs():
    with pytest.raises(ValueError, match="expected an \\(input, target\\) pair"):
        IndexedDataset([torch.zeros(2)] * 3)[0]
    with pytest.raises(ValueError, match="only once"):
        IndexedDataset(IndexedDataset(tensors()))


# ---------------------------------------------------------------- options
def test_selector_validates_options_like_the_config():
    data = IndexedDataset(tensors())
    with pytest.raises(ConfigError, match="filter"):
        Selector("batchwise", data, batch_size=8, filter="sometimes")
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        Selector("nope", data, batch_size=8)
    with pytest.raises(ValueError, match="learning_rate.*not strategy keys"):
        Selector("batchwise", data, batch_size=8, learning_rate=0.1)
    with pytest.raises(ValueError, match="strategy_options.ratio"):
        Selector("infobatch", data, batch_size=8, strategy_options={"ratio": 1.5})


# ---------------------------------------------------------------- faithful to the built-in trainer
# (tests/test_step_equivalence.py: every registered strategy, identical weights and counters)


# ---------------------------------------------------------------- contract checks
def test_loader_without_indices_or_plan_is_a_clear_error():
    data = IndexedDataset(tensors(64))
    model = torch.nn.Linear(5, 2)
    selector = Selector("batchwise", data, batch_size=8)
    with pytest.raises(ValueError, match="wrap the dataset in IndexedDataset"):
        list(selector.batches(DataLoader(tensors(64), batch_size=8), model))
    # epochwise thins the epoch: a shuffling loader cannot follow that plan
    epochwise = Selector("epochwise", data, batch_size=8, model=model)
    with pytest.raises(ValueError, match="sampler=selector.epoch_sampler"):
        list(epochwise.batches(DataLoader(data, batch_size=8, shuffle=True)))
    too_small = Selector("archetype", IndexedDataset(tensors(10)), batch_size=8)
    with pytest.raises(ValueError, match="outside the Selector's dataset of 10"):
        list(too_small.batches(DataLoader(data, batch_size=8)))
    with pytest.raises(ValueError, match="reduction='none'"):
        selector.feedback(torch.arange(4), torch.tensor(1.0), torch.zeros(4, 2), torch.zeros(4).long())


def test_scoring_restores_train_mode_and_leaves_the_global_rng_alone():
    data = IndexedDataset(tensors(64))
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    selector = Selector("batchwise", data, batch_size=8, epochs=2, seed=3, filter="none",
                        selector="top_k", select_k=0.5)
    # (a DataLoader draws its workers' base seed from the global RNG unless given a generator)
    loader = DataLoader(data, batch_size=8, sampler=selector.epoch_sampler(), generator=torch.Generator())
    model.train()
    before = torch.random.get_rng_state()
    chosen = list(selector.batches(loader, model))
    assert torch.equal(before, torch.random.get_rng_state())  # eval-mode scoring, own generators
    assert model.training
    assert len(chosen) == 4 and all(len(b.indices) == 8 for b in chosen)  # 64 -> top half, 4 full batches
    assert selector.epoch_stats()["samples_scored"] == 64


def test_state_dict_resumes_the_same_plans():
    data = IndexedDataset(tensors(50))
    def fresh():
        return Selector("infobatch", data, batch_size=10, epochs=4, seed=1)
    def run_epoch(selector):
        sampler = selector.epoch_sampler()
        plan = list(sampler)
        for start in range(0, len(plan), 10):
            index = torch.tensor(plan[start:start + 10])
            selector.offer(torch.zeros(len(index), 5), torch.zeros(len(index)).long(), index)
            selector.feedback(index, index.float() / 50, torch.zeros(len(index), 2), torch.zeros(len(index)).long())
        selector.end_epoch()
        return plan
    straight = fresh()
    plans = [run_epoch(straight) for _ in range(3)]
    first = fresh()
    run_epoch(first)
    state = first.state_dict()
    resumed = fresh()
    resumed.load_state_dict(state)
    assert [run_epoch(resumed) for _ in range(2)] == plans[1:]
    assert len(plans[1]) < 50  # infobatch pruned low-loss samples from epoch 2 on


def test_batch_sampler_follows_the_strategys_raw_batch_size():
    data = IndexedDataset(tensors(60))
    selector = Selector("rho_loss", data, batch_size=5, strategy_options={"selection": 0.5})
    sampler = selector.batch_sampler()
    assert selector.raw_batch_size == 10 and len(sampler) == 6
    selector = Selector("archetype", data, batch_size=16, seed=2)
    batches = list(selector.batch_sampler())
    assert [len(b) for b in batches] == [16, 16, 16, 12]
    assert sorted(i for b in batches for i in b) == list(range(60))


@pytest.mark.parametrize("policy", ["wait", "partial", "stop"])
def test_starved_epoch_policies(policy):
    """Logits equal the inputs: 3 of 40 samples are misclassified, fewer than one batch."""
    y = torch.arange(40) % 2
    x = F.one_hot(y, 2).float() * 10
    x[[4, 17, 30]] = x[[4, 17, 30]].flip(1)
    data = IndexedDataset(TensorDataset(x, y))
    selector = Selector("batchwise", data, batch_size=8, model=torch.nn.Identity(), starved_epoch=policy)
    loader = DataLoader(data, batch_size=8, sampler=selector.epoch_sampler())
    chosen = list(selector.batches(loader))
    assert selector.epoch_stats()["accepted"] == 3
    if policy == "partial":
        (batch,) = chosen
        assert sorted(batch.indices.tolist()) == [4, 17, 30]
    else:
        assert chosen == [] and selector.epoch_stats()["buffered"] == 3  # kept for the next epoch
    assert selector.should_stop == (policy == "stop")
