"""The peer strategies' rules on hand-made tensors (issue 6)."""

import math

import pytest
import torch
import torch.nn.functional as F

from assist.api import make_config
from assist.strategies import build_strategy
from assist.strategies.base import RawBatch, Scores, StrategyContext
from assist.strategies.importance_sampling import gradient_norm_scores, importance_sample, variance_reduction
from assist.strategies.infobatch import infobatch_prune, prunes_in_epoch
from assist.strategies.ordered_sgd import q_for_level, q_level
from assist.strategies.rho_loss import reducible_top, split_holdout
from assist.strategies.selective_backprop import LossHistory, keep_probabilities, percentile_below


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def context(n=64, batch_size=8, epochs=4):
    return StrategyContext(num_samples=n, batch_size=batch_size, epochs=epochs, shuffle_generator=gen(1),
                           select_generator=gen(2), score_indices=None)


def strategy(name, batch_size=8, epochs=4, **options):
    return build_strategy(make_config({"strategy": name, "batch_size": batch_size, "epochs": epochs,
                                       "strategy_options": options}))


# ---------------------------------------------------------------- InfoBatch
def test_infobatch_prunes_the_given_share_of_below_mean_samples_and_reweights_the_rest():
    scores = torch.cat([torch.full((600,), 0.1), torch.full((400,), 2.0)])  # mean 0.86
    keep, weights = infobatch_prune(scores, 0.5, gen())
    assert keep[600:].all() and (weights[600:] == 1).all()           # above mean: always kept
    assert int(keep[:600].sum()) == 300                                # exactly (1 - r) of below-mean
    assert torch.equal(weights[:600][keep[:600]], torch.full((300,), 2.0))
    keep, weights = infobatch_prune(scores, 0.3, gen())
    assert int(keep[:600].sum()) == 420 and torch.allclose(weights[:600][keep[:600]], torch.tensor(1 / 0.7))


def test_infobatch_keeps_the_expected_loss_sum_unbiased():
    # 20 below-mean samples (an even count, so exactly half is kept): the 1/(1-r) weights
    # make the expected weighted sum over the kept samples the full data set's sum
    scores = torch.cat([0.1 * torch.rand(20, generator=gen(3)), 1 + torch.rand(20, generator=gen(4))])
    values = torch.randn(40, generator=gen(5))  # stands for per-sample gradients
    g = gen(6)
    sums = []
    for _ in range(4000):
        keep, weights = infobatch_prune(scores, 0.5, g)
        sums.append((values * weights * keep).sum())
    sums = torch.stack(sums)
    standard_error = float(sums.std()) / math.sqrt(sums.numel())
    assert abs(float(sums.mean()) - float(values.sum())) < 4 * standard_error
    assert float(sums.std()) > 0  # the pruning is random


def test_infobatch_equal_scores_prune_nothing_and_annealing_epochs():
    keep, weights = infobatch_prune(torch.full((50,), 3.0), 0.5, gen())
    assert keep.all() and (weights == 1).all()
    assert [prunes_in_epoch(e, 10, 0.875) for e in range(1, 11)] == [True] * 9 + [False]
    assert [prunes_in_epoch(e, 8, 0.875) for e in range(1, 9)] == [True] * 7 + [False]


def test_infobatch_strategy_plans_from_training_losses_and_passes_weights():
    s = strategy("infobatch", epochs=10)
    ctx = context(n=64)
    assert s.plan_epoch(1, ctx).shape[0] == 64                      # equal initial scores
    losses = torch.cat([torch.full((32,), 0.01), torch.full((32,), 1.0)])
    s.feedback(torch.arange(64), losses, torch.zeros(64, 2), torch.zeros(64, dtype=torch.long))
    plan = s.plan_epoch(2, ctx)
    assert plan.shape[0] == 48 and s.pruned == 16 and (plan >= 32).sum() == 32
    batch = RawBatch(plan[:8], torch.zeros(8, 1), torch.zeros(8, dtype=torch.long))
    sel = s.select(batch, None, ctx)
    assert torch.equal(sel.weights, torch.where(plan[:8] < 32, 2.0, 1.0))


# ---------------------------------------------------------------- Selective Backprop
def test_selective_backprop_keep_probability_is_percentile_to_the_beta():
    history = torch.tensor([1.0, 2.0, 3.0, 4.0])
    losses = torch.tensor([0.5, 2.5, 5.0, 3.0])
    assert torch.allclose(percentile_below(history, losses), torch.tensor([0.0, 0.5, 1.0, 0.5]))
    assert torch.allclose(keep_probabilities(losses, history, 3.0), torch.tensor([0.0, 0.125, 1.0, 0.125]))
    assert torch.allclose(keep_probabilities(losses, history, 1.0, floor=0.3), torch.tensor([0.3, 0.5, 1.0, 0.5]))


def test_loss_history_keeps_the_most_recent_values():
    h = LossHistory(4)
    h.append(torch.tensor([1.0, 2.0, 3.0]))
    assert sorted(h.current().tolist()) == [1.0, 2.0, 3.0]
    h.append(torch.tensor([4.0, 5.0, 6.0]))
    assert sorted(h.current().tolist()) == [3.0, 4.0, 5.0, 6.0]
    h.append(torch.arange(10.0))
    assert sorted(h.current().tolist()) == [6.0, 7.0, 8.0, 9.0]


def test_selective_backprop_keeps_samples_at_the_predicted_rate():
    s = strategy("selective_backprop", batch_size=8, history=64)
    ctx = context(n=64)
    s.plan_epoch(1, ctx)                                                # priming: everything
    batch = RawBatch(torch.arange(8), torch.zeros(8, 1), torch.arange(8) % 2)
    assert len(s.select(batch, None, ctx)) == 8
    assert s.plan_epoch(2, ctx) is not None and s.needs().scores
    losses = torch.linspace(0.1, 6.4, 64)
    s.history.append(losses)                                            # a full, known history
    kept = torch.zeros(8)
    trials = 3000
    for _ in range(trials):
        s.history.load_state_dict({"values": losses.clone(), "count": 64, "next": 0})
        scores = Scores(torch.zeros(8, 2), torch.tensor([0.05, 1.65, 3.25, 4.85, 6.45, 6.45, 6.45, 6.45]))
        sel = s.select(batch, scores, ctx)
        kept[sel.keep] += 1
    # the batch's 8 losses replaced the 8 oldest of the history before the percentiles
    expected = keep_probabilities(scores.losses, s.history.current(), 3.0)
    assert torch.allclose(kept / trials, expected, atol=0.03)


# ---------------------------------------------------------------- RHO-LOSS
def test_rho_loss_selects_by_reducible_not_raw_loss():
    losses = torch.tensor([5.0, 4.0, 3.0, 2.0, 0.5])
    irreducible = torch.tensor([4.9, 0.0, 3.0, 0.0, 0.4])
    assert reducible_top(losses, irreducible, 2).tolist() == [1, 3]
    assert reducible_top(losses, torch.zeros(5), 2).tolist() == [0, 1]


def test_rho_loss_holdout_split():
    mask = split_holdout(100, 0.1, gen())
    assert int(mask.sum()) == 10
    assert not torch.equal(mask, split_holdout(100, 0.1, gen(9)))
    with pytest.raises(ValueError, match="strategy_options.holdout"):
        split_holdout(1, 0.5, gen())


# ---------------------------------------------------------------- importance sampling
def test_gradient_norm_score_is_the_logit_gradient_norm():
    logits = torch.randn(6, 5, generator=gen(), requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    F.cross_entropy(logits, labels, reduction="sum").backward()
    assert torch.allclose(gradient_norm_scores(logits, labels), logits.grad.norm(dim=1), atol=1e-6)


def test_variance_reduction_estimate():
    assert variance_reduction(torch.ones(10)) == pytest.approx(1.0)
    assert variance_reduction(torch.tensor([0.0, 0.0, 3.0, 0.0])) == pytest.approx(2.0)
    s = torch.rand(20, generator=gen()).double()
    g, u = s / s.sum(), 1 / 20
    paper = (1 - ((g - u) ** 2).sum() / (g ** 2).sum()) ** -0.5
    assert variance_reduction(s) == pytest.approx(float(paper))


def test_importance_weights_are_unbiased_by_simulation():
    scores = torch.rand(12, generator=gen(1)) ** 3 + 0.01
    values = torch.randn(12, generator=gen(2))
    positions, weights = importance_sample(scores, 400_000, gen(3))
    estimates = weights * values[positions]
    standard_error = float(estimates.std()) / math.sqrt(estimates.numel())
    assert abs(float(estimates.mean()) - float(values.mean())) < 5 * standard_error
    p = scores / scores.sum()
    assert torch.allclose(weights, 1 / (12 * p[positions]))


def test_importance_sampling_switches_on_above_the_papers_threshold():
    s = strategy("importance_sampling", batch_size=64)
    assert s.threshold == pytest.approx((192 + 3 * 64) / (3 * 64))
    assert not s.on and not s.needs().scores and s.raw_batch_size() == 64
    ctx = context(n=400, batch_size=64)
    s.plan_epoch(1, ctx)
    batch = RawBatch(torch.arange(64), torch.zeros(64, 1), torch.zeros(64, dtype=torch.long))
    assert len(s.select(batch, None, ctx)) == 64
    confident = torch.full((64, 3), -10.0)
    confident[:, 0] = 10.0
    confident[:4, 0] = -10.0                                           # four hard samples, the rest learned
    for _ in range(40):
        s.feedback(batch.indices, torch.zeros(len(batch)), confident, batch.y)
    assert s.tau > s.threshold and s.on and s.needs().scores and s.raw_batch_size() == 192
    big = RawBatch(torch.arange(192), torch.zeros(192, 1), torch.zeros(192, dtype=torch.long))
    sel = s.select(big, Scores(confident.repeat(3, 1), torch.zeros(192)), ctx)
    assert len(sel) == 64 and sel.weights is not None
    assert s.epoch_metrics()["is_on_fraction"] == pytest.approx(0.5)


# ---------------------------------------------------------------- Ordered SGD
def test_ordered_sgd_q_schedule():
    assert [q_for_level(64, q_level(a)) for a in (0.5, 0.8, 0.9, 0.95, 0.995, 1.0)] == [64, 32, 16, 8, 4, 4]


def test_ordered_sgd_shrinks_q_with_the_epochs_accuracy_and_never_grows_it():
    s = strategy("ordered_sgd", batch_size=16)
    ctx = context(n=64, batch_size=16)
    s.plan_epoch(1, ctx)
    assert s.q == 16 and not s.needs().scores
    labels = (torch.arange(16) == 15).long()                                 # logits all say class 0
    s.feedback(torch.arange(16), torch.zeros(16), torch.eye(2)[[0] * 16], labels)  # 15/16 = 93.75 %
    s.plan_epoch(2, ctx)
    assert s.q == 4 and s.needs().scores
    logits = torch.zeros(16, 2)
    batch = RawBatch(torch.arange(16), torch.zeros(16, 1), torch.ones(16, dtype=torch.long))  # all wrong
    losses = torch.arange(16.0)
    assert s.select(batch, Scores(logits, losses), ctx).keep.tolist() == [12, 13, 14, 15]
    s.plan_epoch(3, ctx)
    assert s.q == 4                                                           # 0 % does not undo it


# ---------------------------------------------------------------- random subset
def test_random_subset_keeps_the_fraction_of_each_raw_batch_and_of_the_epoch():
    s = strategy("random_subset", batch_size=20, fraction=0.3)
    ctx = context(n=100, batch_size=20)
    plan = s.plan_epoch(1, ctx)
    assert plan.shape[0] == 100 and s.needs().accumulate
    batch = RawBatch(plan[:20], torch.zeros(20, 1), torch.zeros(20, dtype=torch.long))
    picks = [s.select(batch, None, ctx).keep for _ in range(200)]
    assert all(len(p) == 6 and len(set(p.tolist())) == 6 for p in picks)
    assert len({tuple(p.tolist()) for p in picks}) > 100                      # random, not fixed
    e = strategy("random_subset", batch_size=20, fraction=0.3, mode="epoch")
    plan = e.plan_epoch(1, context(n=100, batch_size=20))
    assert plan.shape[0] == 30 and len(set(plan.tolist())) == 30 and not e.needs().accumulate


# ---------------------------------------------------------------- RS2
@pytest.mark.parametrize("n, fraction", [(100, 0.3), (97, 0.25), (50, 0.5), (10, 0.7)])
def test_rs2_trains_every_sample_once_before_any_twice_within_each_cycle(n, fraction):
    s = strategy("rs2", batch_size=8, fraction=fraction)
    ctx = context(n=n)
    count = round(fraction * n + 1e-9)
    plans = [s.plan_epoch(epoch, ctx) for epoch in range(1, 13)]
    assert all(p.shape[0] == count and len(set(p.tolist())) == count for p in plans)  # no repeat in an epoch
    stream = torch.cat(plans).tolist()
    for start in range(0, len(stream) - n + 1, n):   # each cycle of n consecutive draws is a permutation
        assert sorted(stream[start:start + n]) == list(range(n)), start
    assert s.epoch_metrics()["rs2_cycle"] == len(stream) // n + (len(stream) % n > 0)


def test_rs2_cycles_differ_and_resume_from_the_state_dict():
    ctx = context(n=40)
    s = strategy("rs2", batch_size=8, fraction=0.5)
    first = [s.plan_epoch(e, ctx) for e in (1, 2)]
    assert not torch.equal(first[0], first[1]) and sorted(torch.cat(first).tolist()) == list(range(40))
    state, generator_state = s.state_dict(), ctx.shuffle_generator.get_state()
    later = [s.plan_epoch(e, ctx) for e in (3, 4, 5)]
    assert torch.cat(first).tolist() != torch.cat(later[:2]).tolist()   # the next cycle is a new permutation
    again = strategy("rs2", batch_size=8, fraction=0.5)
    again.load_state_dict(state)
    ctx.shuffle_generator.set_state(generator_state)
    assert all(torch.equal(a, again.plan_epoch(e, ctx)) for e, a in zip((3, 4, 5), later))


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("name, options, key", [
    ("infobatch", {"ratio": 1.5}, "ratio"), ("infobatch", {"rate": 0.5}, "rate"),
    ("selective_backprop", {"beta": -1}, "beta"), ("selective_backprop", {"staleness": "x"}, "staleness"),
    ("rho_loss", {"selection": 0}, "selection"), ("rho_loss", {"il_epochs": 0}, "il_epochs"),
    ("importance_sampling", {"presample": 1.0}, "presample"),
    ("ordered_sgd", {"thresholds": [0.9, 0.8]}, "thresholds"), ("ordered_sgd", {"q": 3}, "q"),
    ("random_subset", {"mode": "bag"}, "mode"), ("random_subset", {"fraction": 0}, "fraction"),
    ("rs2", {"fraction": 1.5}, "fraction"),
])
def test_invalid_options_name_the_key(name, options, key):
    with pytest.raises(ValueError, match=rf"strategy_options\.{key}\b"):
        strategy(name, **options)


# ---------------------------------------------------------------- DivBS
def test_divbs_does_not_pick_a_repeated_direction_before_a_distinct_one():
    from assist.strategies.divbs import diverse_greedy

    # four copies of one gradient direction, one distinct direction, one small third one
    a, b, c = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), torch.tensor([0, 0, 0.2])
    embeddings = torch.stack([a, a, a, a, b, c])
    for seed in range(20):
        picked = diverse_greedy(embeddings, 2, torch.Generator().manual_seed(seed)).tolist()
        assert len(picked) == 2 and sum(p < 4 for p in picked) <= 1, picked   # never two copies
    for seed in range(20):
        picked = diverse_greedy(embeddings, 3, torch.Generator().manual_seed(seed)).tolist()
        assert picked[-2:] == [4, 5] and picked[0] < 4            # one copy, then both distinct ones
    picked = diverse_greedy(embeddings, 6, torch.Generator().manual_seed(1))
    assert picked.tolist() == list(range(6))                    # the budget is met even past the span


def test_divbs_embeddings_are_the_last_layer_gradient():
    from assist.strategies.divbs import gradient_embeddings

    layer = torch.nn.Linear(5, 3)
    features, labels = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    logits = layer(features)
    embeddings = gradient_embeddings(features, logits.detach(), labels)
    for i in range(4):
        layer.zero_grad()
        torch.nn.functional.cross_entropy(layer(features[i:i + 1]), labels[i:i + 1]).backward()
        assert torch.allclose(embeddings[i], layer.weight.grad.flatten(), atol=1e-6)   # no bias, as the authors'


def test_divbs_draws_in_proportion_to_the_unnormalised_correlation():
    """The authors' rule draws each pick ∝ |d_i · r|. Dividing by the norm of d_i (a reading
    this project once used) would change the first pick's odds here from 10/18.1 to 1/9.1."""
    from assist.strategies.divbs import diverse_greedy, pick_weights

    embeddings = torch.tensor([[10.0, 0.0]] + [[0.0, 1.0]] * 9)
    residual = embeddings.mean(dim=0)                                  # (1, 0.9)
    free = torch.ones(10, dtype=torch.bool)
    assert torch.allclose(pick_weights(embeddings, residual, free), torch.tensor([10.0] + [0.9] * 9))
    free[0] = False
    assert pick_weights(embeddings, residual, free)[0] == 0
    g = torch.Generator().manual_seed(0)
    first = sum(int(diverse_greedy(embeddings, 1, g)[0]) == 0 for _ in range(3000)) / 3000
    assert 0.52 < first < 0.58, first                                 # 10 / 18.1 = 0.552; normalised: 0.11


def test_divbs_trains_its_budget_of_each_raw_batch():
    s = strategy("divbs", batch_size=8, selection=0.25)
    assert s.raw_batch_size() == 32 and s.needs().features and s.needs().scores
    ctx = context(n=64, batch_size=8)
    s.plan_epoch(1, ctx)
    g = torch.Generator().manual_seed(3)
    batch = RawBatch(torch.arange(32), torch.zeros(32, 1), torch.randint(0, 3, (32,), generator=g))
    scores = Scores(torch.randn(32, 3, generator=g), torch.rand(32, generator=g), torch.randn(32, 6, generator=g))
    keep = s.select(batch, scores, ctx).keep
    assert keep.numel() == 8 and len(set(keep.tolist())) == 8
    assert s.epoch_metrics()["divbs_selected_share"] == 0.25


def test_max_loss_is_a_preset_of_the_thesis_top_k():
    config = make_config({"strategy": "max_loss", "batch_size": 32})
    assert (config.strategy, config.filter, config.selector, config.select_k, config.accumulation_batch_size) == \
        ("batchwise", "none", "top_k", 0.1, 320)
    assert make_config({"strategy": "max_loss", "batch_size": 32, "select_k": 0.2}).select_k == 0.2
    s = build_strategy(config)
    batch = RawBatch(torch.arange(320), torch.zeros(320, 1), torch.zeros(320, dtype=torch.long))
    losses = torch.rand(320, generator=gen(0))
    keep = s.select(batch, Scores(torch.zeros(320, 2), losses), context(n=320, batch_size=32)).keep
    assert sorted(keep.tolist()) == sorted(losses.topk(32).indices.tolist())


def test_grad_norm_keeps_the_largest_gradient_bounds_not_the_largest_losses():
    config = make_config({"strategy": "grad_norm", "batch_size": 2})
    s = build_strategy(config)
    assert s.raw_batch_size() == 20 and s.needs().scores and s.needs().accumulate
    # sample 1 has a larger loss than sample 0 but a smaller bound: confusion spread over many
    # classes gives a smaller ||p - e_y|| than one confident wrong class
    n, classes = 20, 6
    probabilities = torch.full((n, classes), 1.0 / classes)
    probabilities[:, 0] = 0.9  # easy samples, label 0
    probabilities[:, 1:] = 0.02
    probabilities[0] = torch.tensor([0.4, 0.6, 0.0, 0.0, 0.0, 0.0])   # one wrong class: big bound
    probabilities[1] = torch.tensor([0.39, 0.122, 0.122, 0.122, 0.122, 0.122])  # spread: smaller bound
    probabilities[2] = torch.tensor([0.3, 0.14, 0.14, 0.14, 0.14, 0.14])  # a larger loss than 0 or 1
    logits = probabilities.clamp_min(1e-9).log()
    labels = torch.zeros(n, dtype=torch.long)
    losses = F.cross_entropy(logits, labels, reduction="none")
    bound = gradient_norm_scores(logits, labels)
    assert sorted(losses.topk(2).indices.tolist()) == [1, 2]
    assert sorted(bound.topk(2).indices.tolist()) == [0, 2]  # the two orders disagree
    batch = RawBatch(torch.arange(n), torch.zeros(n, 1), labels)
    keep = s.select(batch, Scores(logits, losses), context(n=n, batch_size=2)).keep
    assert sorted(keep.tolist()) == [0, 2]


def test_grad_norm_is_is_importance_sampling_always_on():
    config = make_config({"strategy": "grad_norm_is", "batch_size": 8})
    assert config.strategy == "importance_sampling"
    assert config.strategy_options == {"always_on": True, "presample": 10.0}
    s = build_strategy(config)
    assert s.on and s.raw_batch_size() == 80 and s.needs().scores  # on before any score was seen
    kept = make_config({"strategy": "grad_norm_is", "batch_size": 8, "strategy_options": {"presample": 5}})
    assert kept.strategy_options == {"always_on": True, "presample": 5}
