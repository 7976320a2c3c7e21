"""The CIFAR architectures train a few steps through the trainer on CPU (tiny data)."""

import pytest
import torch

from assist.api import make_config
from assist.data.base import ImageDataset, channel_stats
from assist.engine.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_rgb():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(12) % 10
    mean, std = channel_stats(images)
    return ImageDataset("tiny-rgb", images[:8], labels[:8], images[8:], labels[8:], 10, mean, std,
                        default_augmentation="thesis")


@pytest.mark.parametrize("model", ["resnet18", "dla", "simpledla"])
def test_cifar_models_train_a_few_steps(model, tiny_rgb):
    config = make_config({"model": model, "strategy": "batchwise", "batch_accumulation": False, "epochs": 1, "batch_size": 4,
                          "learning_rate": 0.01, "eval_batch_size": 8})
    trainer = Trainer(config, tiny_rgb)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    state = trainer.fit()
    row = state.history[0]
    assert state.status == "completed" and row["augmentation"] == "thesis"
    assert row["steps"] >= 1 and torch.isfinite(torch.tensor(row["test_loss_mean"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
