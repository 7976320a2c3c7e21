"""Sampling strategies, registered by name."""

from assist.registry import Registry
from assist.strategies.base import RawBatch, Scores, Selection, Strategy, StrategyContext

STRATEGIES: Registry[Strategy] = Registry("strategy")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES.register(cls.name)(cls)
    return cls


def build_strategy(config) -> Strategy:
    return STRATEGIES.create(config.strategy, config)


from assist.strategies import archetype, filtering  # noqa: E402,F401  (registration)
from assist.strategies import (  # noqa: E402,F401  (registration: issue 6's peer methods)
    importance_sampling, infobatch, ordered_sgd, random_subset, rho_loss, selective_backprop)

__all__ = ["STRATEGIES", "RawBatch", "Scores", "Selection", "Strategy", "StrategyContext",
           "build_strategy", "register_strategy"]
