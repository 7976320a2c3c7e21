"""Lightning integration: a callback that binds a :class:`Selector` to the LightningModule.

Your module keeps its ``training_step``; it asks the selector what to train on and hands the
per-sample losses back. Returning ``None`` while the strategy accumulates makes Lightning skip
the optimizer step (automatic optimization, single device)::

    def train_dataloader(self):
        return DataLoader(self.selector.dataset, batch_size=self.selector.raw_batch_size,
                          sampler=self.selector.epoch_sampler())

    def training_step(self, batch, batch_idx):
        chosen = self.selector.step(*batch)
        if chosen is None:
            return None
        x, y, index, weight = chosen
        out = self(x)
        losses = F.cross_entropy(out, y, reduction="none")
        self.selector.feedback(index, losses, out, y)
        return (losses * weight).mean()

    trainer = L.Trainer(max_epochs=5, callbacks=[AssistCallback(selector)])

The callback closes each epoch (end-of-epoch policy), logs the selector's epoch counters
(``assist/samples_trained`` ...) and saves the selector's state in Lightning checkpoints.

Under ``Trainer(strategy="ddp", use_distributed_sampler=False)`` build the loader with
``batch_sampler=self.selector.batch_sampler()``: selection stays global (docs/distributed.md).
Lightning refuses a step that returns ``None`` under DDP, so accumulating strategies need
manual optimisation there (``self.automatic_optimization = False``; the pattern is in
docs/distributed.md).
"""

from __future__ import annotations

from typing import Any

from assist.integration.selector import Selector

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Lightning integration needs the lightning package: pip install 'assist-sampling[lightning]'") from None


class AssistCallback(pl.Callback):
    """Drives ``selector`` inside a Lightning ``Trainer.fit``."""

    def __init__(self, selector: Selector, *, log_stats: bool = True, prefix: str = "assist/") -> None:
        self.selector = selector
        self.log_stats = log_stats
        self.prefix = prefix

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit":
            return
        self.selector.model = pl_module  # scoring forwards (and epochwise plans) use the module
        planned, max_epochs = self.selector.config.epochs, trainer.max_epochs
        if max_epochs is not None and max_epochs > 0 and max_epochs != planned:
            raise ValueError(f"Selector was built for epochs={planned} but Trainer(max_epochs={max_epochs}); "
                             "strategies that anneal or plan by epoch need the same number")

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # batches the end-of-epoch policy adds are trained at the start of the next epoch
        self.selector.end_epoch(queue=True)
        if self.log_stats:
            stats = {self.prefix + key: float(value) for key, value in self.selector.epoch_stats().items()
                     if isinstance(value, (int, float)) and key != "epoch"}
            # the counters are equal on every rank (selection is global): the mean over ranks
            # is the value, and Lightning stops asking for sync_dist
            pl_module.log_dict(stats, on_step=False, on_epoch=True, sync_dist=self.selector.group.world_size > 1)

    def state_dict(self) -> dict[str, Any]:
        return self.selector.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.selector.load_state_dict(state_dict)
