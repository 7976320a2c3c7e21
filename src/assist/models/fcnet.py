"""FCNet<N>: the thesis's one-hidden-layer fully connected networks (in -> N -> out).

The input layer takes the flattened image, so its width is C*H*W and any image size works
(3072 for CIFAR, 784 for MNIST, 64 for scikit-learn's 8x8 digits).
"""

from __future__ import annotations

import torch
from torch import nn


class FCNet(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.output = nn.Linear(hidden, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.output

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations, the classifier's input."""
        return torch.relu(self.hidden(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))


def parse_width(suffix: str) -> int:
    """The hidden width from a name suffix: a positive integer written without leading zeros,
    so that every width has exactly one name (``fcnet100``, never ``fcnet0100``)."""
    if not suffix.isdigit() or suffix.startswith("0"):
        raise ValueError(f"fcnet width must be a positive integer, got {suffix!r}")
    return int(suffix)


def build_fcnet(
    hidden: int, *, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> FCNet:
    height, width = image_size
    return FCNet(in_channels * height * width, hidden, num_classes)
