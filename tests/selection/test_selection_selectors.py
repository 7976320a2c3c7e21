"""Selectors (Algorithms 3, 4 and the section 3.2.1 variants): sizes, ties, errors."""

from __future__ import annotations

import math
import sys
from types import FrameType
from typing import Callable

import pytest
import torch

from assist.selection import (
    SELECTOR_NAMES,
    SELECTORS,
    filter_then_select,
    loss_qsplit_random,
    loss_weighted_random,
    qsplit_buckets,
    resolve_count,
    select,
    split_quota,
    top_k,
    top_q,
    uniform_random,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
RANDOM = ["loss_weighted", "q_split", "uniform"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_top_k(losses: list[float], k: int, pool: list[int]) -> list[int]:
    return sorted(sorted(pool, key=lambda i: (-losses[i], i))[: max(k, 0)])


# --- resolve_count ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(5, 10, 5), (0, 10, 0), (-3, 10, 0), (20, 10, 10), (0.5, 10, 5), (0.25, 10, 3),
     (0.01, 10, 1), (0.5, 0, 0), (3, 0, 0), (0.999, 10, 10), (0.04, 10, 1)],
)
def test_resolve_count(k: float, n: int, expected: int) -> None:
    assert resolve_count(k, n) == expected


@pytest.mark.parametrize("bad", [1.0, 0.0, 1.5, -0.5, math.nan, True, "3", None])
def test_resolve_count_rejects_bad_k(bad: object) -> None:
    with pytest.raises(ValueError, match="k"):
        resolve_count(bad, 10)  # type: ignore[arg-type]


def test_resolve_count_rejects_negative_n() -> None:
    with pytest.raises(ValueError, match="n must"):
        resolve_count(3, -1)


# --- top_k -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("device", DEVICES)
def test_top_k_matches_reference_with_many_ties(seed: int, device: str) -> None:
    g = gen(seed)
    n = 40
    losses = torch.randint(0, 6, (n,), generator=g).double()  # many ties
    candidates = torch.rand(n, generator=g) < 0.6
    for k in (-1, 0, 1, 7, n - 1, n, n + 5):
        got = top_k(losses.to(device), k).cpu().tolist()
        assert got == reference_top_k(losses.tolist(), k, list(range(n)))
        got = top_k(losses.to(device), k, candidates=candidates.to(device)).cpu().tolist()
        pool = candidates.nonzero().squeeze(1).tolist()
        assert got == reference_top_k(losses.tolist(), k, pool)


def test_top_k_equal_losses_take_lowest_positions() -> None:
    assert top_k(torch.ones(10), 3).tolist() == [0, 1, 2]
    assert top_k(torch.tensor([1.0, 5.0, 5.0, 0.0, 5.0]), 2).tolist() == [1, 2]


def test_top_k_fraction_is_of_the_pool() -> None:
    losses = torch.arange(10.0)
    candidates = torch.tensor([True] * 4 + [False] * 6)
    assert top_k(losses, 0.5, candidates=candidates).tolist() == [2, 3]
    assert top_k(losses, 0.3).tolist() == [7, 8, 9]


# --- top_q -----------------------------------------------------------------------------

def test_top_q_known_values() -> None:
    losses = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert top_q(losses, 0.5).tolist() == [0, 2]  # median 2.5
    assert top_q(losses, 0.0).tolist() == [0, 1, 2, 3]
    assert top_q(losses, 1.0).tolist() == [0]
    assert top_q(torch.tensor([3.0, 1.0, 3.0]), 1.0).tolist() == [0, 2]  # max with ties
    assert top_q(losses, 0.5, candidates=torch.tensor([True, True, False, False])).tolist() \
        == [0]


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan, True, "0.5"])
def test_top_q_rejects_bad_q(q: object) -> None:
    with pytest.raises(ValueError, match="q"):
        top_q(torch.ones(3), q)  # type: ignore[arg-type]


# --- q-split buckets and quotas -------------------------------------------------------

def reference_thesis_buckets(losses: list[float], buckets: int, power: float) -> list[int]:
    """Algorithm 4 lines 4-14 as written, with a Python loop (test reference only). The
    guard ``b < buckets - 1`` stands in for the thesis's out-of-range append."""
    order = sorted(range(len(losses)), key=lambda i: (losses[i], i))
    cumulative = []
    for i in order:
        cumulative.append((cumulative[-1] if cumulative else 0.0) + losses[i] ** power)
    size, b, ids = cumulative[-1] / buckets, 0, [0] * len(losses)
    for i, c in zip(order, cumulative):
        ids[i] = b
        if c >= size * (b + 1) and b < buckets - 1:
            b += 1
    return ids


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("buckets", [1, 2, 3, 5])
@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_qsplit_buckets_match_thesis_loop(seed: int, buckets: int, power: float) -> None:
    g = gen(seed)
    # Small integers (exact arithmetic, many ties) with a few heavy outliers that outweigh
    # several portions, the case where the bucket may move only one step per sample.
    losses = torch.randint(0, 10, (40,), generator=g).double()
    losses[torch.randint(0, 40, (3,), generator=g)] = 60.0
    assert qsplit_buckets(losses, buckets, power, rule="literal").tolist() == \
        reference_thesis_buckets(losses.tolist(), buckets, power)
    smooth = 0.5 + 0.5 * torch.rand(60, generator=g, dtype=torch.float64)
    assert qsplit_buckets(smooth, buckets, power, rule="literal").tolist() == \
        reference_thesis_buckets(smooth.tolist(), buckets, power)


def test_qsplit_buckets_heavy_sample_and_zero_mass_literal() -> None:
    literal = {"rule": "literal"}
    # Eight 1s and one 8 with power 1: total 16, the 8th one reaches the cut at 8.
    losses = torch.tensor([1.0] * 4 + [8.0] + [1.0] * 4)
    assert qsplit_buckets(losses, 2, 1.0, **literal).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    # Power 3: the 8 holds 512 of 520; the loop only moves on *after* it, so all is bucket 0.
    assert qsplit_buckets(losses, 3, 3.0, **literal).tolist() == [0] * 9
    # Cuts at 6, 12, 18: the first 10 crosses two of them, yet the next sample moves only
    # one bucket up (the thesis loop), leaving buckets 2 and 3 empty.
    assert qsplit_buckets(torch.tensor([1.0, 1, 1, 1, 10, 10]), 4, 1.0, **literal).tolist() == \
        [0, 0, 0, 0, 0, 1]
    assert qsplit_buckets(torch.zeros(5), 3, **literal).tolist() == [2] * 5
    assert qsplit_buckets(losses, 2, 1.0, candidates=losses < 2, **literal).tolist() == \
        [0, 0, 0, 0, -1, 1, 1, 1, 1]


def test_qsplit_prose_buckets_follow_the_mass() -> None:
    """Thesis 3.2.1: a sample belongs to the portion where most of its mass lies."""
    losses = torch.tensor([1.0] * 4 + [8.0] + [1.0] * 4)
    # power 3: the 8 holds 512 of 520 units, its middle (264) in the top third: it is that bucket alone
    assert qsplit_buckets(losses, 3, 3.0).tolist() == [0, 0, 0, 0, 2, 0, 0, 0, 0]
    # cuts at 6, 12, 18 of 24: the 10s' middles are at 9 and 19 -> buckets 1 and 3
    assert qsplit_buckets(torch.tensor([1.0, 1, 1, 1, 10, 10]), 4, 1.0).tolist() == [0, 0, 0, 0, 1, 3]
    assert qsplit_buckets(torch.zeros(5), 3).tolist() == [2] * 5


def test_qsplit_prose_example_selects_the_dominant_sample() -> None:
    """Losses [0.1, 0.2, 0.3, 0.4, 5, 6], k=2, q=2, p=2: the loss-6 sample is the top
    portion by itself, so it is drawn in (nearly) every draw; the literal reading misses it."""
    losses = torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0, 6.0])
    g = gen(0)
    prose = sum(5 in loss_qsplit_random(losses, 2, 2, 2.0, g).tolist() for _ in range(400))
    literal = sum(5 in loss_qsplit_random(losses, 2, 2, 2.0, g, rule="literal").tolist() for _ in range(400))
    assert prose >= 0.95 * 400 and literal < 0.6 * 400


@pytest.fixture(scope="module")
def shared_losses() -> list[torch.Tensor]:
    """Per-sample losses of real raw batches: FCNet100 on scikit-learn's digits, scored while
    it trains (batchwise, raw batches of 256)."""
    from assist.api import load_data, make_config
    from assist.engine.trainer import Trainer
    from assist.events import Callback

    seen: list[torch.Tensor] = []

    class Collect(Callback):
        def on_batch_scored(self, trainer, *, scores, **info):
            seen.append(scores.losses.detach().clone())

    config = make_config({"dataset": "digits", "epochs": 8, "batch_size": 32, "strategy": "batchwise",
                          "accumulation_batch_size": 256, "filter": "none", "selector": "top_k", "select_k": 64})
    Trainer(config, load_data(config), callbacks=[Collect()]).fit()
    return seen


def test_qsplit_prose_top_bucket_is_never_empty_on_real_losses(shared_losses) -> None:
    """On per-sample losses of a real model the top portion holds at least one sample
    whenever there is a cut (two or more buckets and some mass)."""
    for losses in shared_losses:
        for buckets, power in [(2, 2.0), (2, 3.0), (3, 3.0), (4, 2.0)]:
            ids = qsplit_buckets(losses, buckets, power)
            assert (ids == buckets - 1).any()
    # the literal reading leaves the top bucket empty in some of these raw batches
    empty = [not (qsplit_buckets(l, 2, 3.0, rule="literal") == 1).any() for l in shared_losses]
    assert len(shared_losses) >= 10 and any(empty)


@pytest.mark.parametrize(
    ("count", "sizes", "expected"),
    [(4, [10, 10], [2, 2]), (5, [10, 10], [2, 3]), (5, [10, 10, 10], [1, 2, 2]),
     (4, [8, 1], [3, 1]), (7, [0, 5, 1], [0, 5, 1]), (3, [0, 0, 9], [0, 0, 3]),
     (9, [3, 3, 3], [3, 3, 3]), (20, [3, 3, 3], [3, 3, 3]), (0, [4, 4], [0, 0]),
     (6, [1, 10, 10], [1, 2, 3]), (8, [10, 10, 0], [4, 4, 0]), (8, [10, 10, 2], [3, 3, 2])],
)
def test_split_quota(count: int, sizes: list[int], expected: list[int]) -> None:
    assert split_quota(count, sizes) == expected


def test_qsplit_shortfall_goes_to_other_bucket() -> None:
    losses = torch.tensor([1.0] * 4 + [8.0] + [1.0] * 4)
    for seed in range(10):
        picked = loss_qsplit_random(losses, 4, 2, 1.0, gen(seed)).tolist()
        assert len(picked) == 4 and 4 in picked  # the lone high bucket gives all it has


@pytest.mark.parametrize("seed", range(5))
def test_qsplit_each_bucket_gets_its_quota(seed: int) -> None:
    g = gen(seed)
    losses = torch.rand(300, generator=g) * 5
    candidates = torch.rand(300, generator=g) < 0.7
    for buckets, power, k in [(2, 2.0, 10), (3, 3.0, 17), (4, 1.0, 0.1), (5, 0.5, 1)]:
        ids = qsplit_buckets(losses, buckets, power, candidates=candidates)
        sizes = torch.bincount(ids[candidates], minlength=buckets).tolist()
        picked = loss_qsplit_random(losses, k, buckets, power, g, candidates=candidates)
        count = resolve_count(k, int(candidates.sum()))
        assert torch.bincount(ids[picked], minlength=buckets).tolist() == \
            split_quota(count, sizes)
        assert candidates[picked].all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_qsplit_rejects_bad_buckets(bad: object) -> None:
    with pytest.raises(ValueError, match="buckets"):
        loss_qsplit_random(torch.ones(5), 2, bad, 2.0, gen(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "2"])
def test_qsplit_rejects_bad_power(bad: object) -> None:
    with pytest.raises(ValueError, match="power"):
        loss_qsplit_random(torch.ones(5), 2, 2, bad, gen(0))  # type: ignore[arg-type]


# --- shared contract of all selectors --------------------------------------------------

def run(name: str, losses: torch.Tensor, k: object, seed: int = 0, **kw: object) -> torch.Tensor:
    return select(name, losses, k, gen(seed), q=0.5, buckets=3, power=2.0, **kw)  # type: ignore


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize("device", DEVICES)
def test_output_contract(name: str, device: str) -> None:
    g = gen(11)
    losses = (torch.rand(100, generator=g) * 3).to(device)
    candidates = (torch.rand(100, generator=g) < 0.5).to(device)
    before = (losses.clone(), candidates.clone())
    for k in (1, 5, 0.3, 49, 1000):
        for cand in (None, candidates):
            out = run(name, losses, k, candidates=cand)
            assert out.dtype == torch.int64 and out.dim() == 1 and out.device == losses.device
            assert torch.equal(out, out.unique())  # sorted ascending and unique
            assert out.numel() == 0 or (0 <= out.min() and out.max() < 100)
            pool = 100 if cand is None else int(cand.sum())
            if name != "top_q":
                assert out.numel() == resolve_count(k, pool)
            if cand is not None:
                assert cand[out].all()
    assert torch.equal(losses, before[0]) and torch.equal(candidates, before[1])


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_empty_input_and_empty_pool(name: str) -> None:
    assert run(name, torch.empty(0), 5).tolist() == []
    out = run(name, torch.ones(4), 2, candidates=torch.zeros(4, dtype=torch.bool))
    assert out.tolist() == [] and out.dtype == torch.int64
    if name != "top_q":
        assert run(name, torch.ones(4), 0).tolist() == []
        assert run(name, torch.ones(4), 10).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", RANDOM)
def test_random_selectors_are_deterministic_per_seed(name: str) -> None:
    losses = torch.rand(200, generator=gen(5))
    assert torch.equal(run(name, losses, 20, seed=3), run(name, losses, 20, seed=3))
    outputs = {tuple(run(name, losses, 20, seed=s).tolist()) for s in range(6)}
    assert len(outputs) == 6  # 20 of 200: a repeat across seeds would be a broken RNG path


@pytest.mark.parametrize("name", RANDOM)
def test_random_selectors_need_a_generator(name: str) -> None:
    with pytest.raises(ValueError, match="generator"):
        select(name, torch.ones(5), 2, None)


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize(
    ("losses", "candidates", "match"),
    [
        (torch.ones(3, 2), None, "losses"),
        (torch.ones(3, dtype=torch.int64), None, "losses"),
        (torch.tensor([1.0, math.nan, 2.0]), None, "losses"),
        (torch.tensor([1.0, math.inf, 2.0]), None, "losses"),
        (torch.ones(3), torch.ones(3), "candidates"),
        (torch.ones(3), torch.ones(4, dtype=torch.bool), "candidates"),
    ],
)
def test_bad_inputs_name_the_argument(name: str, losses: torch.Tensor,
                                      candidates: torch.Tensor | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(name, losses, 2, candidates=candidates)


def test_select_dispatch_errors() -> None:
    assert set(SELECTOR_NAMES) == {"top_k", "top_q", "loss_weighted", "q_split", "uniform"}
    assert SELECTORS["top_k"] is top_k and SELECTORS["q_split"] is loss_qsplit_random
    with pytest.raises(ValueError, match="selector"):
        select("nope", torch.ones(3), 1)
    for name in ("top_k", "loss_weighted", "q_split", "uniform"):
        with pytest.raises(ValueError, match="k is required"):
            select(name, torch.ones(3), None, gen(0))
    assert select("top_q", torch.arange(4.0), None, q=0.5).tolist() == [2, 3]


def test_uniform_random_standalone() -> None:
    out = uniform_random(10, 4, gen(1))
    assert out.numel() == 4 and out.device.type == "cpu"
    assert uniform_random(0, 4, gen(1)).tolist() == []
    with pytest.raises(ValueError, match="n must"):
        uniform_random(-2, 1, gen(1))


def test_negative_losses_get_zero_weight() -> None:
    losses = torch.tensor([-5.0, -1.0, 2.0, 0.0])
    for seed in range(20):
        assert loss_weighted_random(losses, 1, gen(seed)).tolist() == [2]


def traced_lines(fn: Callable[[], object]) -> int:
    """Python lines executed while ``fn`` runs: a per-sample loop would execute at least
    one line per sample, vectorised code a fixed few hundred. Unlike a wall-clock bound
    this does not depend on machine load."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Callable | None:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("name", SELECTOR_NAMES)
def test_hundred_thousand_samples_run_vectorised(name: str) -> None:
    g = gen(0)
    losses = torch.rand(100_000, generator=g) * 4
    candidates = torch.rand(100_000, generator=g) < 0.5
    out = run(name, losses, 30_000)
    out_c = run(name, losses, 0.25, candidates=candidates)
    if name != "top_q":
        assert out.numel() == 30_000
        assert out_c.numel() == resolve_count(0.25, int(candidates.sum()))
    small = losses[:1000]
    lines_small = traced_lines(lambda: run(name, small, 300, candidates=candidates[:1000]))
    lines_large = traced_lines(lambda: run(name, losses, 30_000, candidates=candidates))
    assert lines_large <= lines_small + 20 and lines_large < 1000, (lines_small, lines_large)
    # The filter + fill path too (few pass, so the fill runs).
    few = losses > 3.99
    lines = traced_lines(lambda: filter_then_select(few, losses, name, 30_000, gen(1)))
    assert lines < 1000


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("data_device", DEVICES)
@pytest.mark.parametrize("gen_device", DEVICES)
def test_generator_may_live_on_another_device(name: str, data_device: str,
                                              gen_device: str) -> None:
    losses = torch.rand(500, generator=gen(9)).to(data_device)
    candidates = losses > 0.3

    def draw() -> torch.Tensor:
        g = torch.Generator(device=gen_device).manual_seed(21)
        return select(name, losses, 40, g, candidates=candidates, buckets=3)

    out = draw()
    assert out.device == losses.device and out.numel() == 40 and candidates[out].all()
    assert torch.equal(out, draw())  # same seed on the same generator device, same draw
