"""A collapsed run: one whose test accuracy stayed at chance for its last epochs.

At aggressive settings (e.g. the thesis's lr 0.1, momentum 0.9, batch 1024 on MNIST/LeNet)
a seed can diverge to a constant prediction and stay there while the run "completes". Such a
run must not hide in a mean: reports show it on a row of its own, figures draw it alone and
``assist status`` marks it."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

COLLAPSE_EPOCHS = 3      # the last epochs that must all sit at chance
COLLAPSE_MARGIN = 0.05   # "at chance": within this share of the distance from chance to 1
CLASSES_OF = {"mnist": 10, "cifar10": 10, "cifar100": 100, "digits": 10}


def num_classes_of(config: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] = ()) -> Optional[int]:
    """The run's number of classes: recorded in its metrics rows, else from its config."""
    for row in rows:
        if isinstance(row.get("num_classes"), int):
            return int(row["num_classes"])
    subset = config.get("num_classes")
    if isinstance(subset, list):
        return len(subset)
    if isinstance(subset, int) and not isinstance(subset, bool):
        return subset
    return CLASSES_OF.get(str(config.get("dataset")))


def is_collapsed(test_accuracies: list[Optional[float]], num_classes: Optional[int]) -> bool:
    """Whether each of the last ``COLLAPSE_EPOCHS`` test accuracies (all of them when fewer)
    lies within ``COLLAPSE_MARGIN`` of chance, ``1 / num_classes``."""
    values = [a for a in test_accuracies if isinstance(a, (int, float))]
    if not values or not num_classes or num_classes < 2:
        return False
    chance = 1.0 / num_classes
    limit = chance + COLLAPSE_MARGIN * (1.0 - chance)
    return all(a <= limit for a in values[-COLLAPSE_EPOCHS:])
