"""The Lightning integration with a real lightning Trainer on CPU, on tiny data."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning", reason="the lightning extra is not installed: pip install -e '.[lightning]'")

from assist.integration import IndexedDataset, Selector
from assist.integration.lightning import AssistCallback
from conftest import REPO
from test_docs_integration import doc_commands


def blobs(n: int = 240, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + 2.0 * F.one_hot(y, 6).float()
    return TensorDataset(x, y)


class Tiny(L.LightningModule):
    def __init__(self, selector: Selector) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(6, 3)
        self.selector = selector
        self.trained: list[torch.Tensor] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        chosen = self.selector.step(*batch)
        if chosen is None:
            return None
        x, y, index, weight = chosen
        out = self(x)
        losses = F.cross_entropy(out, y, reduction="none")
        self.selector.feedback(index, losses, out, y)
        self.trained.append(index)
        return (losses * weight).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(selector: Selector, epochs: int, tmp_path, ckpt_path=None, extra_callbacks=(),
        **trainer_kwargs) -> tuple[Tiny, "L.Trainer"]:
    model = Tiny(selector)
    loader = DataLoader(selector.dataset, batch_size=selector.raw_batch_size, sampler=selector.epoch_sampler())
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[AssistCallback(selector), *extra_callbacks],
                        logger=False,
                        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                        **trainer_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about workers and `None` steps
        trainer.fit(model, loader, ckpt_path=ckpt_path)
    return model, trainer


def test_batchwise_in_lightning_trains_only_full_accepted_batches(tmp_path):
    data = IndexedDataset(blobs())
    selector = Selector("batchwise", data, batch_size=16, epochs=2, seed=0)
    model, trainer = fit(selector, 2, tmp_path, enable_checkpointing=False)
    stats = selector.epoch_stats()
    assert selector.epoch == 2 and stats["samples_scored"] == 240
    assert all(len(index) == 16 for index in model.trained)  # accumulation gives full batches
    assert 0 < stats["samples_trained"] < 240 and stats["steps"] == stats["samples_trained"] // 16
    assert trainer.callback_metrics["assist/samples_trained"] == stats["samples_trained"]


def test_infobatch_resumes_from_a_lightning_checkpoint(tmp_path):
    """The selector's state rides in Lightning checkpoints: a run resumed after epoch 2
    prunes and trains exactly as the uninterrupted one."""
    data = IndexedDataset(blobs())
    straight = Selector("infobatch", data, batch_size=16, epochs=3, seed=4)
    full_model, _ = fit(straight, 3, tmp_path / "a", enable_checkpointing=False)
    first = Selector("infobatch", data, batch_size=16, epochs=3, seed=4)
    every_epoch = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    fit(first, 3, tmp_path / "b", extra_callbacks=[every_epoch])
    checkpoint = next((tmp_path / "ckpt").glob("epoch=1-*.ckpt"))
    resumed = Selector("infobatch", data, batch_size=16, epochs=3, seed=4)
    resumed_model, _ = fit(resumed, 3, tmp_path / "c", ckpt_path=str(checkpoint), enable_checkpointing=False)
    assert straight.epoch_stats()["infobatch_pruned"] > 0
    assert torch.equal(resumed.strategy.scores, straight.strategy.scores)
    assert torch.equal(resumed_model.net.weight, full_model.net.weight)


def test_selector_epochs_must_match_the_trainer(tmp_path):
    selector = Selector("infobatch", IndexedDataset(blobs(32)), batch_size=16, epochs=5)
    with pytest.raises(ValueError, match="epochs=5 but Trainer\\(max_epochs=2\\)"):
        fit(selector, 2, tmp_path, enable_checkpointing=False)


def test_lightning_example_runs_as_the_docs_show(tmp_path, monkeypatch, capsys):
    (command,) = doc_commands("python examples/lightning_assist.py")
    tokens = shlex.split(command)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", tokens[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path(str(REPO / tokens[1]), run_name="__main__")
    out = capsys.readouterr().out
    strategy = tokens[tokens.index("--strategy") + 1]
    accuracy = float(re.search(rf"{strategy}: val accuracy ([\d.]+)%", out).group(1))
    assert accuracy > 50.0, out  # ten classes: chance is 10%
    assert list((tmp_path / "runs" / "lightning").glob("lightning_logs/version_0/metrics.csv"))
