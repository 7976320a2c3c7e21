"""LeNet-5 as in the kuangliu/pytorch-cifar collection the thesis trained on.

Two 5x5 convolutions with 2x2 max pooling, then three fully connected layers. The first
fully connected layer expects a 16x5x5 feature map, which a 32x32 input produces; other
input sizes are rejected by ``create_model``'s shape probe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.fc3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations (84 per sample), the classifier's input."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 32 -> 28 -> 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 14 -> 10 -> 5
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        return F.relu(self.fc2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.features(x))


def build_lenet(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> LeNet:
    del image_size  # fixed at 32x32 by the architecture; checked by the shape probe
    return LeNet(in_channels, num_classes)
