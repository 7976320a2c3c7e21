"""Put on PYTHONPATH by the kill-and-resume test: with ASSIST_TEST_HOLD_AFTER_EPOCH=N set, the
process that writes the run directory stops for good right after epoch N's checkpoint is
saved, so the test's SIGKILL always lands between epoch N and the end, however fast the
machine (the other ranks wait in their next collective)."""

import os

HOLD = os.environ.get("ASSIST_TEST_HOLD_AFTER_EPOCH")

if HOLD:
    import time

    from assist.engine import checkpoint

    saved = checkpoint.Checkpointer.on_epoch_end

    def on_epoch_end(self, trainer, *, epoch, **info):
        saved(self, trainer, epoch=epoch, **info)
        if epoch == int(HOLD):
            while True:
                time.sleep(60)

    checkpoint.Checkpointer.on_epoch_end = on_epoch_end
