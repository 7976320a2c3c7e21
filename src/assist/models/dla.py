"""Deep Layer Aggregation (Yu et al. 2018) for 32x32 images, as in kuangliu/pytorch-cifar.

Two variants, both with the same stem and stage widths:

* ``DLA`` follows the paper's hierarchical aggregation: a tree of level L runs its subtrees
  (levels L-1 .. 1) one after another, then two blocks, and a root node fuses the outputs
  of every subtree and both blocks; trees above level 1 also feed the root a block applied
  straight to their input (L+2 maps in all, 2 at level 1).
* ``SimpleDLA`` is the collection's simplified binary tree: a tree of level L is two trees of
  level L-1 in sequence, and its root fuses just those two outputs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from assist.models.resnet import BasicBlock, conv_bn


class Root(nn.Module):
    """Fuses several same-sized maps: concatenate channels, 1x1 conv, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = conv_bn(in_channels, out_channels, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return F.relu(self.fuse(torch.cat(maps, dim=1)))


class HierarchicalTree(nn.Module):
    """DLA tree of ``level`` >= 1. Only the modules that read the tree's input (the input
    block, the first subtree or, at level 1, the first block) change width and resolution;
    everything after them works at ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, level: int, stride: int) -> None:
        super().__init__()
        # Above level 1 the root also sees the input itself, brought to the output size by a
        # block of its own (kuangliu's ``prev_root``).
        self.input_block: nn.Module | None = (
            BasicBlock(in_channels, out_channels, stride) if level > 1 else None
        )
        subtrees: list[nn.Module] = []
        width_in = in_channels
        for sub_level in range(level - 1, 0, -1):
            subtrees.append(HierarchicalTree(width_in, out_channels, sub_level, stride))
            width_in, stride = out_channels, 1
        self.subtrees = nn.ModuleList(subtrees)
        self.left = BasicBlock(width_in, out_channels, stride)
        self.right = BasicBlock(out_channels, out_channels)
        fused = level + 2 if level > 1 else 2
        self.root = Root(fused * out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [] if self.input_block is None else [self.input_block(x)]
        for subtree in self.subtrees:
            x = subtree(x)
            maps.append(x)
        x = self.left(x)
        maps.append(x)
        maps.append(self.right(x))
        return self.root(maps)


class BinaryTree(nn.Module):
    """SimpleDLA tree: left and right children (blocks at level 1, trees below that) run in
    sequence and a root fuses their two outputs."""

    def __init__(self, in_channels: int, out_channels: int, level: int, stride: int) -> None:
        super().__init__()
        if level == 1:
            self.left: nn.Module = BasicBlock(in_channels, out_channels, stride)
            self.right: nn.Module = BasicBlock(out_channels, out_channels)
        else:
            self.left = BinaryTree(in_channels, out_channels, level - 1, stride)
            self.right = BinaryTree(out_channels, out_channels, level - 1, 1)
        self.root = Root(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.left(x)
        return self.root([left, self.right(left)])


TreeFactory = Callable[[int, int, int, int], nn.Module]


class DLA(nn.Module):
    """Three conv-BN-ReLU layers (16, 16, 32 channels) at full resolution, four trees
    (64, 128, 256, 512 channels; levels 1, 2, 2, 1; the last three halve the resolution),
    4x4 average pooling and a linear classifier."""

    def __init__(self, tree: TreeFactory, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *(
                nn.Sequential(conv_bn(width_in, width_out, 3), nn.ReLU())
                for width_in, width_out in ((in_channels, 16), (16, 16), (16, 32))
            )
        )
        self.trees = nn.Sequential(
            tree(32, 64, 1, 1),
            tree(64, 128, 2, 2),
            tree(128, 256, 2, 2),
            tree(256, 512, 1, 2),
        )
        self.linear = nn.Linear(512, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        return self.linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 512 channels, the classifier's input."""
        return F.avg_pool2d(self.trees(self.stem(x)), 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def build_dla(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> DLA:
    del image_size  # the fixed 4x4 pool ties it to ~32x32 inputs; checked by the shape probe
    return DLA(HierarchicalTree, in_channels, num_classes)


def build_simple_dla(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> DLA:
    del image_size
    return DLA(BinaryTree, in_channels, num_classes)
