"""A Lightning fit of the Selector on one CPU device or under Lightning's DDP strategy (which
starts the other ranks by running this script again), for tests/test_distributed.py; rank 0
writes the final weights and the Selector's last epoch counters as JSON.

    python lightning_worker.py NPROC OUT.json STRATEGY [ddp|ddp_spawn]
"""

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
from test_integration_lightning import Tiny, blobs  # noqa: E402

from assist.integration import IndexedDataset, Selector  # noqa: E402
from assist.integration.lightning import AssistCallback  # noqa: E402


# Lightning refuses a training step that returns None under DDP (automatic optimisation): a
# scoring top-half selection hands out a batch for every raw batch; the accumulating
# strategies (batchwise filtering with accumulation, Selective Backprop) run in a module that
# optimises manually and skips the step itself while the strategy gathers
OPTIONS = {"top_half_unstable": {"strategy": "batchwise", "batch_accumulation": False, "filter": "none",
                                 "selector": "top_q", "select_q": 0.5}}
MANUAL = {"batchwise", "selective_backprop"}


class ShardedTiny(Tiny):
    def train_dataloader(self):
        return DataLoader(self.selector.dataset, batch_sampler=self.selector.batch_sampler())

    def on_train_end(self):
        if self.global_rank == 0:
            weights = {name: value.tolist() for name, value in self.net.state_dict().items()}
            Path(sys.argv[2]).write_text(json.dumps({"weights": weights, "stats": self.selector.epoch_stats(),
                                                     "optimizer_steps": self.optimizer_steps}))

    @property
    def optimizer_steps(self) -> int:
        return int(self.trainer.global_step)


class ManualTiny(ShardedTiny):
    """The docs/distributed.md pattern for an accumulating strategy under Lightning's DDP."""

    def __init__(self, selector):
        super().__init__(selector)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        chosen = self.selector.step(*batch)
        if chosen is None:   # the same on every rank: selection is global
            return None
        x, y, index, weight = chosen
        optimizer = self.optimizers()
        optimizer.zero_grad()
        out = self(x)
        losses = torch.nn.functional.cross_entropy(out, y, reduction="none")
        self.selector.feedback(index, losses, out, y)
        self.manual_backward((losses * weight).mean())
        optimizer.step()


def main() -> None:
    torch.set_num_threads(1)
    nproc, strategy = int(sys.argv[1]), sys.argv[3]

    options = OPTIONS.get(strategy, {})
    selector = Selector(options.pop("strategy", strategy), IndexedDataset(blobs()), batch_size=16, epochs=2, seed=1,
                        **options)
    launch = sys.argv[4] if len(sys.argv) > 4 else "ddp"   # ddp_spawn pickles the module and its Selector
    parallel = {"strategy": launch, "devices": nproc} if nproc > 1 else {"devices": 1}
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", callbacks=[AssistCallback(selector)],
                        use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **parallel)
    trainer.fit((ManualTiny if strategy in MANUAL else ShardedTiny)(selector))


if __name__ == "__main__":
    main()
