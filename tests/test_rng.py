"""Named random streams and how a generator travels to another process."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import torch

from assist.rng import Stream, derive_seed, generator


def test_streams_of_one_seed_are_independent_and_reproducible():
    seeds = {derive_seed(7, stream) for stream in Stream}
    assert len(seeds) == len(Stream)
    assert derive_seed(7, Stream.SHUFFLE) == derive_seed(7, Stream.SHUFFLE) != derive_seed(8, Stream.SHUFFLE)
    a, b = generator(7, Stream.SELECT), generator(7, Stream.SELECT)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_a_generator_crosses_multiprocessings_pickler_with_its_state():
    """The pickler of spawned processes gets the state as bytes (pytorch/pytorch#146828): the
    copy draws what the original draws next, and the two are independent afterwards."""
    original = generator(3, Stream.SHUFFLE)
    torch.rand(5, generator=original)
    copy = pickle.loads(ForkingPickler.dumps(original))
    assert isinstance(copy, torch.Generator) and copy is not original
    assert torch.equal(torch.rand(6, generator=copy), torch.rand(6, generator=original))
    torch.rand(1, generator=copy)
    assert not torch.equal(torch.rand(6, generator=copy), torch.rand(6, generator=original))
