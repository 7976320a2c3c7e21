"""Put on PYTHONPATH by the kill tests, to make a kill land before the end however fast the
machine.

- ASSIST_TEST_HOLD_AFTER_EPOCH=N (the data-parallel kill-and-resume test): the process that
  writes the run directory stops for good right after epoch N's checkpoint is saved, so the
  SIGKILL lands between epoch N and the end (the other ranks wait in their next collective).
- ASSIST_TEST_EPOCH_FLOOR_S=S (the sweep kill test): every epoch lasts at least S seconds (a
  pause after its checkpoint), so a sweep with many epochs left cannot finish in the moments
  between the test seeing progress and its signal arriving. Results are unchanged.
- ASSIST_TEST_HOLD_RANK=R with ASSIST_TEST_HOLD_AFTER_EPOCH=N (the dying-rank test): rank R
  of a data-parallel run stops for good once epoch N is done on it (rank 0's checkpoint of it
  saved), so the other ranks wait in the next epoch's first collective when R is killed.
"""

import os

HOLD = os.environ.get("ASSIST_TEST_HOLD_AFTER_EPOCH")
HOLD_RANK = os.environ.get("ASSIST_TEST_HOLD_RANK")
FLOOR = os.environ.get("ASSIST_TEST_EPOCH_FLOOR_S")

if FLOOR:
    import time

    from assist.engine import checkpoint

    slow = checkpoint.Checkpointer.on_epoch_end

    def on_epoch_end_slowly(self, trainer, *, epoch, **info):
        slow(self, trainer, epoch=epoch, **info)
        time.sleep(float(FLOOR))

    checkpoint.Checkpointer.on_epoch_end = on_epoch_end_slowly

if HOLD and HOLD_RANK:
    import time

    from assist.engine.trainer import Trainer

    epoch_of = Trainer.run_epoch

    def run_epoch(self, epoch, started):
        row = epoch_of(self, epoch, started)
        if epoch == int(HOLD) and self.group.rank == int(HOLD_RANK):
            while True:
                time.sleep(60)
        return row

    Trainer.run_epoch = run_epoch
elif HOLD:
    import time

    from assist.engine import checkpoint

    saved = checkpoint.Checkpointer.on_epoch_end

    def on_epoch_end(self, trainer, *, epoch, **info):
        saved(self, trainer, epoch=epoch, **info)
        if epoch == int(HOLD):
            while True:
                time.sleep(60)

    checkpoint.Checkpointer.on_epoch_end = on_epoch_end
