"""The peer strategies in the trainer and across a save/restore (issue 6)."""

import io
import time

import pytest
import torch

from assist.api import make_config
from assist.events import Callback
from assist.metrics.system import system_metrics
from assist.engine.trainer import Trainer, fit_reference
from assist.strategies import build_strategy
from assist.strategies.base import RawBatch, Scores, StrategyContext

# options chosen so that every piece of state changes within a few tiny epochs
PEERS = [
    ("infobatch", {"delta": 0.75}),
    ("selective_backprop", {}),
    ("selective_backprop", {"staleness": 1, "history": 40}),
    ("rho_loss", {}),
    ("importance_sampling", {"tau_threshold": 1.2}),
    ("ordered_sgd", {}),
    ("random_subset", {"fraction": 0.3}),
    ("random_subset", {"mode": "epoch"}),
    ("divbs", {"selection": 0.25}),
    ("rs2", {"fraction": 0.3}),
]
IDS = [f"{name}-{'-'.join(map(str, options.values())) or 'default'}" for name, options in PEERS]


def config_for(name, options, tmp_path, **overrides):
    values = {"model": "fcnet16", "epochs": 3, "batch_size": 16, "strategy": name, "learning_rate": 0.05,
              "strategy_options": options, "data_dir": str(tmp_path)}
    return make_config({**values, **overrides})


SYSTEM = set(system_metrics(torch.device("cpu")))


def stable(row):
    """A metrics row without times, system readings and provenance (a cached reference model)."""
    return {k: v for k, v in row.items() if not k.endswith(("_s", "_cached")) and k not in SYSTEM}


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name, options", PEERS, ids=IDS)
def test_resumed_run_repeats_the_uninterrupted_one(name, options, toy_data, tmp_path):
    config = config_for(name, options, tmp_path)
    whole = Trainer(config, toy_data).fit().history
    first = Trainer(config, toy_data)
    started = time.perf_counter()
    first.run_epoch(1, started)
    first.run_epoch(2, started)
    resumed = Trainer(config, toy_data)
    resumed.load_state_dict(roundtrip(first.state_dict()))
    rest = resumed.fit().history
    assert [stable(r) for r in rest] == [stable(r) for r in whole]
    assert sum(r["samples_trained"] for r in whole) > 0


def fake_forward(indices, labels, step):
    """Deterministic logits that drift with the step, so losses change over time."""
    classes = torch.arange(4, dtype=torch.float32)
    logits = 3 * torch.sin(indices[:, None].float() * 0.37 + classes[None, :] * 1.3 + 0.05 * step)
    return logits, torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def drive(strategy, ctx, labels, plan, start, stop, epoch_step):
    """Walk ``plan[start:stop]`` in raw batches as the trainer does; log every decision."""
    log, position, step = [], start, epoch_step
    while position < stop:
        size = strategy.raw_batch_size()
        indices = plan[position:position + size]
        position += size
        y = labels[indices]
        logits, losses = fake_forward(indices, y, step)
        needs = strategy.needs()
        features = torch.cos(indices[:, None].float() * 0.11 + torch.arange(6.0)[None, :]) if needs.features else None
        scores = Scores(logits, losses, features) if needs.scores else None
        selection = strategy.select(RawBatch(indices, torch.zeros(len(indices), 1), y), scores, ctx)
        weights = None if selection.weights is None else selection.weights.tolist()
        log.append((indices.tolist(), selection.keep.tolist(), weights))
        kept = indices[selection.keep]
        if len(kept):
            logits, losses = fake_forward(kept, labels[kept], step + 1)
            strategy.feedback(kept, losses, logits, labels[kept])
        step += 1
    return log, step


@pytest.mark.parametrize("name, options", PEERS, ids=IDS)
def test_state_restored_mid_epoch_gives_identical_decisions(name, options, toy_data, tmp_path):
    config = config_for(name, options, tmp_path)
    labels = toy_data.train_labels

    def context(shuffle_state=None, select_state=None):
        shuffle, select = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        if shuffle_state is not None:
            shuffle.set_state(shuffle_state)
            select.set_state(select_state)
        return StrategyContext(num_samples=toy_data.num_train, batch_size=16, epochs=4, shuffle_generator=shuffle,
                               select_generator=select, score_indices=None, labels=labels, data=toy_data,
                               train_reference=lambda spec: fit_reference(toy_data, spec, device="cpu",
                                                                          eval_batch_size=1024))

    original, ctx = build_strategy(config), context()
    step = 0
    for epoch in (1, 2):
        plan = original.plan_epoch(epoch, ctx)
        _, step = drive(original, ctx, labels, plan, 0, len(plan), step)
    plan = original.plan_epoch(3, ctx)
    half = len(plan) // 2
    _, step = drive(original, ctx, labels, plan, 0, half, step)
    saved = roundtrip({"strategy": original.state_dict(), "shuffle": ctx.shuffle_generator.get_state(),
                       "select": ctx.select_generator.get_state()})

    def finish(strategy, ctx):
        log, next_step = drive(strategy, ctx, labels, plan, half, len(plan), step)
        later = strategy.plan_epoch(4, ctx)
        more, _ = drive(strategy, ctx, labels, later, 0, len(later), next_step)
        return log + more, strategy.epoch_metrics()

    expected = finish(original, ctx)
    restored = build_strategy(config)
    restored.load_state_dict(saved["strategy"])
    assert finish(restored, context(saved["shuffle"], saved["select"])) == expected


@pytest.mark.parametrize("name, options", [("infobatch", {"delta": 0.75}), ("importance_sampling", {"tau_threshold": 1.2})])
def test_strategy_weights_reach_the_training_step(name, options, toy_data, tmp_path):
    seen = []

    class Watch(Callback):
        def on_batch_selected(self, trainer, *, batch, selection, **info):
            if selection.weights is not None:
                seen.append(selection.weights.clone())

    Trainer(config_for(name, options, tmp_path), toy_data, callbacks=[Watch()]).fit()
    assert seen and any((w != 1).any() for w in seen)
    if name == "infobatch":
        assert all(set(w.unique().tolist()) <= {1.0, 2.0} for w in seen)  # 1 / (1 - ratio 0.5)


@pytest.mark.parametrize("name, options", PEERS, ids=IDS)
def test_peers_leave_the_global_rng_alone(name, options, toy_data, tmp_path):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    Trainer(config_for(name, options, tmp_path, epochs=2), toy_data).fit()
    assert torch.equal(before, torch.get_rng_state())


def test_stale_selective_backprop_skips_scoring_between_refreshes(toy_data, tmp_path):
    history = Trainer(config_for("selective_backprop", {"staleness": 2}, tmp_path, epochs=6), toy_data).fit().history
    assert [r["sb_mode"] for r in history] == ["prime", "stale", "stale", "fresh", "stale", "stale"]
    assert [r["samples_scored"] for r in history] == [0, 0, 0, 192, 0, 0]
    fresh = Trainer(config_for("selective_backprop", {}, tmp_path, epochs=3), toy_data).fit().history
    assert [r["samples_scored"] for r in fresh] == [0, 192, 192]
    assert fresh[0]["samples_trained"] == 192 > fresh[1]["samples_trained"]


def test_rho_loss_never_trains_on_its_holdout_and_caches_the_il_model(toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(tmp_path / "cache"))
    trained = []

    class Watch(Callback):
        def on_batch_selected(self, trainer, *, batch, selection, **info):
            trained.append(batch.indices[selection.keep.cpu()])

    config = config_for("rho_loss", {}, tmp_path, epochs=2)
    trainer = Trainer(config, toy_data, callbacks=[Watch()])
    history = trainer.fit().history
    holdout = trainer.strategy.holdout
    assert int(holdout.sum()) == 19 and not holdout[torch.cat(trained)].any()
    assert history[0]["samples_scored"] == 192 - 19 and history[0]["samples_trained"] == 16 + 1
    assert history[0]["rho_il_samples_trained"] == 10 * 19 and history[1]["rho_il_samples_trained"] == 0
    assert not trainer.strategy.il_cached and list((tmp_path / "cache" / "rho_loss").glob("*.pt"))
    again = Trainer(config, toy_data)
    assert [stable(r) for r in again.fit().history] == [stable(r) for r in history]
    assert again.strategy.il_cached and torch.equal(again.strategy.irreducible, trainer.strategy.irreducible)
    other = Trainer(config_for("rho_loss", {"il_epochs": 3}, tmp_path, epochs=1), toy_data)
    other.fit()
    assert not other.strategy.il_cached  # a different IL config is a different cache entry


def test_rho_loss_without_data_in_the_context_says_so(tmp_path):
    strategy = build_strategy(config_for("rho_loss", {}, tmp_path))
    ctx = StrategyContext(num_samples=10, batch_size=16, epochs=1, shuffle_generator=torch.Generator(),
                          select_generator=torch.Generator(), score_indices=None)
    with pytest.raises(ValueError, match="needs the in-memory data set"):
        strategy.plan_epoch(1, ctx)


def test_cli_style_override_reaches_the_strategy(tmp_path):
    from assist.config import apply_overrides

    values = apply_overrides({"strategy": "infobatch"}, ["strategy_options.ratio=0.3", "strategy_options.delta=0.5"])
    strategy = build_strategy(make_config(values))
    assert strategy.options.ratio == 0.3 and strategy.options.delta == 0.5
    with pytest.raises(ValueError, match=r"strategy_options\.ratio"):
        build_strategy(make_config(apply_overrides({"strategy": "infobatch"}, ["strategy_options.ratio=2"])))


def test_rho_loss_retrains_over_an_unreadable_cache(toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(tmp_path / "cache"))
    config = config_for("rho_loss", {"il_epochs": 2}, tmp_path, epochs=1)
    first = Trainer(config, toy_data)
    first.fit()
    (entry,) = (tmp_path / "cache" / "rho_loss").glob("*.pt")
    entry.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable IL cache"):
        second = Trainer(config, toy_data)
        second.fit()
    assert not second.strategy.il_cached and torch.equal(second.strategy.irreducible, first.strategy.irreducible)
    assert torch.load(entry, weights_only=True)["irreducible"].shape == (toy_data.num_train,)
    # a readable file of the wrong structure or length is not trusted either: rebuilt
    good = torch.load(entry, weights_only=True)
    broken = {"a cache of the wrong length": {**good, "irreducible": good["irreducible"][:-1]},
              "a holdout mask of the wrong length": {**good, "holdout": good["holdout"][:-1]},
              "a holdout that holds nothing out": {**good, "holdout": torch.zeros_like(good["holdout"])},
              "a foreign structure": {"weights": torch.zeros(3)}}
    for case, content in broken.items():
        torch.save(content, entry)
        with pytest.warns(UserWarning, match="unusable IL cache"):
            third = Trainer(config, toy_data)
            third.fit()
        assert not third.strategy.il_cached, case
        assert torch.equal(third.strategy.irreducible, first.strategy.irreducible), case
