"""cifar10 reads an image-folder copy (like ../shared/data/cifar10-jpeg.tar.gz) when the python
batches are absent."""

import numpy as np
import pytest
from PIL import Image

from assist.data import DataError, load_dataset


def write_folder(root, classes):
    for split, count in (("train", 2), ("test", 1)):
        for c in range(classes):
            folder = root / "cifar10-jpeg" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.full((32, 32, 3), 20 * c + i, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def test_cifar10_falls_back_to_the_image_folder_copy(tmp_path):
    write_folder(tmp_path, 10)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.name == "cifar10" and data.num_classes == 10
    assert tuple(data.train_images.shape) == (20, 3, 32, 32) and data.default_augmentation == "thesis"


def test_image_folder_copy_with_wrong_class_count_is_refused(tmp_path):
    write_folder(tmp_path, 3)
    with pytest.raises(DataError, match="3 classes, cifar10 has 10"):
        load_dataset("cifar10", data_dir=tmp_path)
