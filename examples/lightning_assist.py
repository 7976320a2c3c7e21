"""An ASSIST strategy inside a Lightning training run (scikit-learn's digits, CPU, seconds).

    python examples/lightning_assist.py --strategy batchwise --epochs 3

The LightningModule keeps its own training_step, optimizer and logging; ASSIST decides which
samples each step trains on (``selector.step``) and learns from the per-sample losses
(``selector.feedback``). ``AssistCallback`` closes epochs, logs the selector's counters and
keeps its state in Lightning checkpoints.
"""

import argparse

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from assist.integration import IndexedDataset, Selector
from assist.integration.lightning import AssistCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self, selector: Selector, lr: float = 0.05) -> None:
        super().__init__()
        self.selector = selector
        self.lr = lr
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        chosen = self.selector.step(*batch)  # None while the strategy gathers a full batch
        if chosen is None:
            return None
        x, y, index, weight = chosen
        out = self(x)
        losses = F.cross_entropy(out, y, reduction="none")
        self.selector.feedback(index, losses, out, y)
        loss = (losses * weight).mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def digits_split(seed: int):
    """Train / validation tensors of scikit-learn's digits (8x8 images scaled to [0, 1])."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    val, train = order[:360], order[360:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def main(argv=None):
    parser = argparse.ArgumentParser(description="ASSIST + Lightning on scikit-learn's digits")
    parser.add_argument("--strategy", default="batchwise", help="ASSIST strategy (default: batchwise)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/lightning", help="Lightning's default_root_dir")
    args = parser.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    train_set, val_set = digits_split(args.seed)
    train_set = IndexedDataset(train_set)
    selector = Selector(args.strategy, train_set, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed)
    train_loader = DataLoader(train_set, batch_size=selector.raw_batch_size, sampler=selector.epoch_sampler())
    val_loader = DataLoader(val_set, batch_size=256)

    model = DigitsClassifier(selector)
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[AssistCallback(selector)], accelerator="cpu",
                        default_root_dir=args.out, enable_progress_bar=False, enable_model_summary=False,
                        logger=L.pytorch.loggers.CSVLogger(args.out), num_sanity_val_steps=0)
    trainer.fit(model, train_loader, val_loader)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    print(f"{args.strategy}: val accuracy {100 * metrics['val_accuracy']:.1f}%, "
          f"trained {int(metrics['assist/samples_trained'])} samples in the last epoch")
    return metrics


if __name__ == "__main__":
    main()
