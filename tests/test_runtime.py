"""The speed settings (engine/runtime.py): precision, score precision, channels_last, compile."""

from __future__ import annotations

import pytest
import torch

from assist.api import make_config
from assist.config import ConfigError
from assist.engine.runtime import compiler_problem
from assist.engine.trainer import Trainer
from conftest import deterministic, make_toy_dataset


pytestmark = pytest.mark.usefixtures("keep_torch_threads")


def trainer(data, **values) -> Trainer:
    config = make_config({"dataset": "synthetic", "model": "fcnet16", "epochs": 1, "batch_size": 16,
                          "num_threads": 1, **values})
    return Trainer(config, data)


def record_dtypes(model: torch.nn.Module) -> list[tuple[bool, torch.dtype]]:
    """(grad enabled, output dtype) of the model's first Linear at every forward."""
    seen: list[tuple[bool, torch.dtype]] = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append((torch.is_grad_enabled(), out.dtype)))
    return seen


@pytest.fixture(scope="module")
def data():
    return make_toy_dataset()


def test_bf16_runs_the_training_and_scoring_forwards_in_bfloat16(data):
    t = trainer(data, precision="bf16", strategy="batchwise")
    seen = record_dtypes(t.model)
    state = t.fit()
    training = {dtype for grad, dtype in seen if grad}
    scoring = {dtype for grad, dtype in seen if not grad}
    assert training == {torch.bfloat16}
    assert torch.bfloat16 in scoring and torch.float32 in scoring  # scoring bf16, evaluation fp32
    row = state.history[-1]
    assert row["samples_scored"] > 0 and torch.isfinite(torch.tensor(row["test_loss_mean"]))


def test_score_precision_alone_makes_scoring_cheap_and_leaves_training_fp32(data):
    t = trainer(data, score_precision="bf16", strategy="batchwise")
    seen = record_dtypes(t.model)
    t.fit()
    assert {dtype for grad, dtype in seen if grad} == {torch.float32}
    assert torch.bfloat16 in {dtype for grad, dtype in seen if not grad}


@pytest.mark.parametrize("key", ["precision", "score_precision"])
def test_fp16_needs_a_gpu(key):
    with pytest.raises(ConfigError, match=f"{key}=fp16 needs a CUDA device"):
        make_config({key: "fp16"})


def test_channels_last_converts_conv_models_and_trains_the_same(tmp_path):
    images = make_toy_dataset(size=32, classes=3, n_train=96, n_test=32)
    plain = Trainer(make_config({"model": "lenet", "epochs": 1, "batch_size": 16, "num_threads": 1}), images)
    nhwc = Trainer(make_config({"model": "lenet", "epochs": 1, "batch_size": 16, "num_threads": 1,
                                "channels_last": True}), images)
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.runtime.channels_last and not plain.runtime.channels_last
    a, b = plain.fit().history[-1], nhwc.fit().history[-1]
    assert a["steps"] == b["steps"]
    assert abs(a["test_loss_mean"] - b["test_loss_mean"]) < 1e-4
    fcnet = trainer(make_toy_dataset(), channels_last=True)
    assert not fcnet.runtime.channels_last  # no convolutions: nothing to convert


def test_compile_trains_like_the_plain_model(data):
    problem = compiler_problem("cpu")
    if problem:
        pytest.skip(problem)
    plain = trainer(data, strategy="batchwise").fit().history[-1]
    compiled = trainer(data, strategy="batchwise", compile=True)
    assert compiled.runtime.compiled is not None
    row = compiled.fit().history[-1]
    assert (row["steps"], row["samples_scored"], row["samples_trained"]) == \
        (plain["steps"], plain["samples_scored"], plain["samples_trained"])
    assert abs(row["test_loss_mean"] - plain["test_loss_mean"]) < 1e-4
    # the checkpoint holds the plain module's names, so it loads without compile
    state = compiled.state_dict()["model"]
    assert not any(key.startswith("_orig_mod") for key in state)


# ---------------------------------------------------------------- score_every
def _step(model, score_every=2, n=12, classes=3):
    from assist.engine.scoring import Scorer
    from assist.engine.step import SelectionStep
    from assist.strategies import StrategyContext, build_strategy

    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(n, 4, generator=g), torch.randint(0, classes, (n,), generator=g)
    strategy = build_strategy(make_config({"strategy": "batchwise", "batch_size": 4}))
    fetch = lambda i: (xs[i], ys[i])  # noqa: E731
    scorer = Scorer(model, fetch=fetch, eval_batch_size=8, num_samples=n, score_every=score_every)
    context = StrategyContext(num_samples=n, batch_size=4, epochs=5, shuffle_generator=torch.Generator(),
                              select_generator=torch.Generator(), score_indices=scorer.score_indices)
    return SelectionStep(strategy, context, scorer, fetch=fetch), xs, ys


def test_score_every_reuses_exactly_the_recorded_logits_while_they_are_young():
    model = torch.nn.Linear(4, 3)
    step, xs, ys = _step(model)
    everything = torch.arange(12)
    step.epoch = step.scorer.epoch = 1
    first = step.scorer.score_batch(everything, xs, ys)
    assert step.counters.samples_scored == 12 and step.counters.samples_reused == 0
    with torch.no_grad():
        model.weight.add_(1.0)  # a fresh forward would now give other logits
    step.epoch = step.scorer.epoch = 2  # one epoch old: reused, no forward
    second = step.scorer.score_batch(everything, xs, ys)
    assert torch.equal(second.logits, first.logits) and step.counters.samples_scored == 12
    assert step.counters.samples_reused == 12
    assert torch.allclose(second.losses, torch.nn.functional.cross_entropy(first.logits, ys, reduction="none"))
    step.epoch = step.scorer.epoch = 3  # two epochs old: scored again, with the changed model
    third = step.scorer.score_batch(everything, xs, ys)
    assert step.counters.samples_scored == 24
    assert torch.allclose(third.logits, model(xs).detach()) and not torch.allclose(third.logits, first.logits)
    # a training forward is a record too: only the others are scored
    step.epoch = step.scorer.epoch = 5
    step.feedback(torch.arange(4), torch.zeros(4), torch.full((4, 3), 7.0), ys[:4])
    mixed = step.scorer.score_batch(everything, xs, ys)
    assert step.counters.samples_scored == 24 + 8 and step.counters.samples_reused == 12 + 4
    assert torch.equal(mixed.logits[:4], torch.full((4, 3), 7.0))


def test_score_every_one_records_nothing():
    step, xs, ys = _step(torch.nn.Linear(4, 3), score_every=1)
    assert step.scorer.memory is None
    step.epoch = step.scorer.epoch = 1
    step.scorer.score_batch(torch.arange(12), xs, ys)
    assert "scores_reused_share" not in step.stats()


def test_score_every_resumes_bit_identically(tmp_path):
    from assist.api import train
    from assist.events import Callback

    values = {"dataset": "synthetic", "model": "fcnet16", "epochs": 4, "batch_size": 16, "num_threads": 1,
              "strategy": "batchwise", "score_every": 2}

    class CrashAfter(Callback):
        def on_epoch_end(self, trainer, *, epoch, **info):
            if epoch == 2:
                raise RuntimeError("crash")

    reference = train(values, out=tmp_path / "ref").history
    with pytest.raises(RuntimeError):
        train(values, out=tmp_path / "run", callbacks=[CrashAfter()])
    resumed = train(values, out=tmp_path / "run").history
    assert deterministic(resumed) == deterministic(reference)
    assert reference[1]["scores_reused"] > 0
