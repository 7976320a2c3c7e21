"""In-memory batch pipeline: normalisation, seeded augmentation, replay, evaluation order."""

from __future__ import annotations

import pytest
import torch

from assist.data.augment import index_params
from assist.data.base import DataError, ImageDataset
from assist.data.pipeline import BatchPipeline


def split(n: int = 50, c: int = 3, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)


def stats(c: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (0.5, 0.4, 0.3)[:c], (0.25, 0.2, 0.3)[:c]


def normalised(images: torch.Tensor, mean, std) -> torch.Tensor:
    c = images.shape[1]
    return (images.float() / 255.0 - torch.tensor(mean).view(1, c, 1, 1)) / torch.tensor(std).view(1, c, 1, 1)


@pytest.mark.parametrize("c,size", [(1, 8), (3, 32), (1, 28)])
def test_none_is_plain_normalisation_exactly(c, size):
    images, labels = split(20, c, size)
    pipe = BatchPipeline(images, labels, *stats(c), augmentation="none", device="cpu")
    idx = torch.tensor([3, 0, 19, 3])
    x, y = pipe.batch(idx, None)
    assert x.dtype == torch.float32 and x.shape == (4, c, size, size) and x.device.type == "cpu"
    assert torch.equal(x, normalised(images[idx], *stats(c)))
    assert torch.equal(y, labels[idx]) and y.dtype == torch.int64


@pytest.mark.parametrize("name", ["light", "thesis"])
@pytest.mark.parametrize("c,size", [(1, 8), (3, 32), (3, 8)])
def test_augmented_batches_shapes_and_range(name, c, size):
    images, labels = split(30, c, size)
    mean, std = stats(c)
    pipe = BatchPipeline(images, labels, mean, std, augmentation=name)
    x, y = pipe.batch(torch.arange(30), torch.Generator().manual_seed(0))
    assert x.shape == (30, c, size, size) and x.dtype == torch.float32
    raw = x * torch.tensor(std).view(1, c, 1, 1) + torch.tensor(mean).view(1, c, 1, 1)
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6  # augmentation stayed in [0, 1]
    assert not torch.allclose(x, normalised(images, mean, std))  # something was augmented
    assert torch.equal(y, labels)


def test_same_seed_gives_bit_identical_batches_and_no_global_rng():
    images, labels = split()
    pipe = BatchPipeline(images, labels, *stats(3), augmentation="thesis")
    idx = torch.tensor([5, 1, 1, 40])
    state = torch.get_rng_state()
    x1, _ = pipe.batch(idx, torch.Generator().manual_seed(11))
    x2, _ = pipe.batch(idx, torch.Generator().manual_seed(11))
    x3, _ = pipe.batch(idx, torch.Generator().manual_seed(12))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    assert not torch.equal(x1[1], x1[2])  # the same sample twice gets two different views


def test_replay_epoch_table_gives_the_scored_view():
    """Epochwise filtering: draw params for all N at epoch start, score, then train on a subset."""
    images, labels = split()
    pipe = BatchPipeline(images, labels, *stats(3), augmentation="thesis")
    table = pipe.sample_params(len(pipe), torch.Generator().manual_seed(3))
    scored, _ = pipe.batch(torch.arange(len(pipe)), params=table)
    kept = torch.tensor([44, 2, 17])
    trained, y = pipe.batch(kept, params=index_params(table, kept))
    torch.testing.assert_close(trained, scored[kept], atol=1e-5, rtol=0)
    assert torch.equal(y, labels[kept])
    again, _ = pipe.batch(kept, torch.Generator().manual_seed(99), params=index_params(table, kept))
    assert torch.equal(again, trained)  # explicit params win over the generator


def test_eval_batches_cover_everything_in_order_without_augmentation():
    images, labels = split(23, 1, 8)
    pipe = BatchPipeline(images, labels, *stats(1), augmentation="thesis")
    seen = list(pipe.eval_batches(10))
    assert [len(i) for _, _, i in seen] == [10, 10, 3]
    assert torch.equal(torch.cat([i for _, _, i in seen]), torch.arange(23))
    assert torch.equal(torch.cat([x for x, _, _ in seen]), normalised(images, *stats(1)))
    assert torch.equal(torch.cat([y for _, y, _ in seen]), labels)


def test_from_dataset_uses_default_augmentation_for_train_only():
    tr, trl = split(12)
    te, tel = split(6, seed=1)
    ds = ImageDataset("toy", tr, trl, te, tel, 10, *stats(3), default_augmentation="light")
    assert BatchPipeline.from_dataset(ds).augmentation.name == "light"
    test = BatchPipeline.from_dataset(ds, "test")
    assert test.augmentation.name == "none" and len(test) == 6
    assert BatchPipeline.from_dataset(ds, augmentation="thesis").augmentation.name == "thesis"


def test_clear_errors():
    images, labels = split(10)
    with pytest.raises(DataError, match="uint8"):
        BatchPipeline(images.float(), labels, *stats(3))
    with pytest.raises(DataError, match="one per channel"):
        BatchPipeline(images, labels, (0.5,), (0.2,))
    with pytest.raises(DataError, match="labels"):
        BatchPipeline(images, labels[:5], *stats(3))
    pipe = BatchPipeline(images, labels, *stats(3), augmentation="light")
    with pytest.raises(ValueError, match="needs a generator or params"):
        pipe.batch(torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        pipe.batch(torch.tensor([10]), torch.Generator())
    with pytest.raises(ValueError, match="1-D int64"):
        pipe.batch(torch.tensor([0.0]), torch.Generator())
    plain = BatchPipeline(images, labels, *stats(3))
    with pytest.raises(ValueError, match="takes no params"):
        plain.batch(torch.tensor([0]), params={"flip": torch.tensor([True])})


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # runs on a GPU where there is one


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["none", "light", "thesis"])
def test_device_batches_match_cpu_and_are_seeded(device, name):
    images, labels = split(64)
    cpu = BatchPipeline(images, labels, *stats(3), augmentation=name, device="cpu")
    dev = BatchPipeline(images, labels, *stats(3), augmentation=name, device=device)
    assert dev.images.device.type == device and dev.images.dtype == torch.uint8
    idx = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:32]
    x_cpu, y_cpu = cpu.batch(idx, torch.Generator().manual_seed(1))
    x_dev, y_dev = dev.batch(idx, torch.Generator().manual_seed(1))
    x_again, _ = dev.batch(idx, torch.Generator().manual_seed(1))
    assert x_dev.device.type == device and torch.equal(x_dev, x_again)
    assert torch.equal(y_dev.cpu(), y_cpu)
    # Same parameters on both devices; nearest sampling may pick a neighbour at exact ties and
    # float rounding differs, so allow a handful of differing pixels for the affine recipe.
    differs = ((x_dev.cpu() - x_cpu).abs() > 1e-4).float().mean().item()
    assert differs == 0.0 if name != "thesis" else differs < 0.01
