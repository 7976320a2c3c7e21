"""ResNet-18 for 32x32 images, as in the kuangliu/pytorch-cifar collection.

Differs from the ImageNet ResNet in its stem: one 3x3 stride-1 convolution and no max
pooling, so a 32x32 input reaches the last stage as a 4x4 map, which a fixed 4x4 average
pool reduces to one vector. The residual block is shared with the DLA models (``dla.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Sequential:
    """Bias-free convolution (batch norm supplies the shift) followed by batch norm."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut; the shortcut is a 1x1 conv-BN projection
    whenever the block changes resolution or width, the identity otherwise."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body1 = conv_bn(in_channels, out_channels, 3, stride)
        self.body2 = conv_bn(out_channels, out_channels, 3)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body2(F.relu(self.body1(x)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A stem, four stages of basic blocks (64, 128, 256, 512 channels; the last three halve
    the resolution), 4x4 average pooling and a linear classifier."""

    def __init__(self, blocks_per_stage: list[int], in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_channels, 64, 3), nn.ReLU())
        stages: list[nn.Module] = []
        width_in = 64
        for index, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            first_stride = 1 if index == 0 else 2
            blocks = [BasicBlock(width_in, width, first_stride)]
            blocks += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            width_in = width
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(512, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 512 channels, the classifier's input."""
        return F.avg_pool2d(self.stages(self.stem(x)), 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def build_resnet18(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> ResNet:
    del image_size  # the fixed 4x4 pool ties it to ~32x32 inputs; checked by the shape probe
    return ResNet([2, 2, 2, 2], in_channels, num_classes)
