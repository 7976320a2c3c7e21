"""Named random streams: every random draw of a run comes from a generator derived from the
run's seed and one of these streams (docs/architecture.md, "Randomness").

A stream number is part of a run's identity: changing one changes every result drawn from it,
so numbers are never reused or renumbered, only added.
"""

from __future__ import annotations

from enum import IntEnum
from multiprocessing.reduction import ForkingPickler

import numpy as np
import torch


class Stream(IntEnum):
    SHUFFLE = 0        # epoch plans (the archetype's shuffle and every strategy's order)
    AUGMENT = 1        # per-sample augmentation parameters
    SELECT = 2         # random choices of selection (fills, draws, pruning)
    EVAL_SUBSET = 3    # the training-set subset evaluated each epoch
    HOLDOUT = 101      # RHO-LOSS: which samples are held out for the reference model
    REFERENCE = 104    # RHO-LOSS: the reference (irreducible-loss) run's own seed
    SCENARIO_IMBALANCE = 201   # data scenarios (data/scenarios.py): which samples an imbalance keeps
    SCENARIO_NOISE = 202       # which labels are flipped, and to what
    SCENARIO_DUPLICATES = 203  # which samples are replaced by copies, and of which


def derive_seed(seed: int, stream: Stream | int) -> int:
    """A 63-bit seed for ``stream``, independent of every other stream of the same ``seed``."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def generator(seed: int, stream: Stream | int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator for one purpose of the run seeded ``seed``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream))


def _rebuild_generator(device: str, state: bytes) -> torch.Generator:
    rebuilt = torch.Generator(device=device)
    rebuilt.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    return rebuilt


def _reduce_generator(g: torch.Generator):
    return _rebuild_generator, (str(g.device), g.get_state().numpy().tobytes())


# A generator sent to a process started by "spawn" or "forkserver" (Lightning's ddp_spawn
# pickles the module, and a Selector holds generators) crashes in torch's own reduction, whose
# state tensor is freed before the child maps it (pytorch/pytorch#146828). Multiprocessing's
# pickler sends the state as bytes instead: the same copy of the state, without shared memory.
ForkingPickler.register(torch.Generator, _reduce_generator)
