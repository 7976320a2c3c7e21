"""Optimizers and learning-rate schedules of the thesis (Table 4.1)."""

from __future__ import annotations

import torch

from assist.config import TrainConfig


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":  # decoupled weight decay (RHO-LOSS's reference model, DivBS)
        return torch.optim.AdamW(params, lr=config.learning_rate, amsgrad=config.amsgrad,
                                 weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.learning_rate, amsgrad=config.amsgrad,
                            weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Epoch-based schedules (stepped once per epoch), or None."""
    if config.lr_scheduler == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.resolved_gamma)
    if config.lr_scheduler == "multistep":
        milestones = list(range(config.milestone_every, config.epochs, config.milestone_every))
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.resolved_gamma)
    return None
