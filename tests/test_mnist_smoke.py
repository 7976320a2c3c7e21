"""LeNet on real MNIST (padded to 32x32) through every thesis strategy, briefly."""

import pytest

from assist.api import train

THESIS = ["archetype", "epochwise", "batchwise", "epoch_batchwise"]


@pytest.fixture(scope="module")
def mnist_subset(shared_data_dir):
    from assist.data import load_dataset

    return load_dataset("mnist", data_dir=shared_data_dir, samples_per_class=60, seed=0)


@pytest.mark.parametrize("strategy", THESIS)
def test_lenet_learns_mnist(strategy, mnist_subset, tmp_path):
    assert mnist_subset.image_size == (32, 32)
    result = train({"dataset": "mnist", "model": "lenet", "strategy": strategy, "epochs": 4, "batch_size": 32,
                    "learning_rate": 0.05, "samples_per_class": 60}, data=mnist_subset, out=tmp_path / strategy)
    assert result.summary["status"] == "completed"
    # 600 training images, four epochs: well above chance (10%) on the full 10,000-image test set
    assert max(row["test_accuracy"] for row in result.history) > 0.4
