"""Sampling strategies, registered by name."""

from assist.registry import Registry
from assist.strategies.base import (LoopNeeds, RawBatch, ReferenceResult, ReferenceSpec, RunSetup, Scores,
                                    Selection, Strategy, StrategyContext)
from assist.strategies.params import StrategyOptions, StrategyParams, params_schema, strategy_keys

STRATEGIES: Registry[Strategy] = Registry("strategy")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    STRATEGIES.register(cls.name)(cls)
    return cls


def build_strategy(config) -> Strategy:
    """The strategy of a validated config (``assist.validation.validate_run``)."""
    return STRATEGIES.resolve(config.strategy).from_config(config)


from assist.strategies import archetype, filtering  # noqa: E402,F401  (registration)
from assist.strategies import (  # noqa: E402,F401  (registration: the peer methods)
    divbs, grad_norm, importance_sampling, infobatch, ordered_sgd, random_subset, rho_loss, selective_backprop)

__all__ = ["STRATEGIES", "LoopNeeds", "RawBatch", "ReferenceResult", "ReferenceSpec", "RunSetup", "Scores",
           "Selection", "Strategy", "StrategyContext", "StrategyOptions", "StrategyParams", "build_strategy",
           "params_schema", "register_strategy", "strategy_keys"]
