"""Sampling strategies, registered by name (strategies/registry.py), each with its own option
schema; strategies/resolve.py turns a flat mapping of keys into a resolved run."""

from assist.strategies import (  # noqa: F401  (registration: the thesis's methods, then the peer methods)
    archetype, divbs, filtering, grad_norm, importance_sampling, infobatch, ordered_sgd, random_subset, rho_loss,
    rs2, selective_backprop)
from assist.strategies.base import (LoopNeeds, RawBatch, ReferenceResult, ReferenceSpec, RunSetup, Scores,
                                    Selection, Strategy, StrategyContext)
from assist.strategies.options import StrategyOptions, StrategyParams
from assist.strategies.registry import STRATEGIES, register_strategy
from assist.strategies.resolve import ResolvedRun, resolve_run, strategy_keys


def build_strategy(run: ResolvedRun) -> Strategy:
    """The strategy of a resolved run, from its already validated options (never validated again)."""
    return STRATEGIES.resolve(run.strategy)(run.options, RunSetup.from_config(run.config))


__all__ = ["STRATEGIES", "LoopNeeds", "RawBatch", "ReferenceResult", "ReferenceSpec", "ResolvedRun", "RunSetup",
           "Scores", "Selection", "Strategy", "StrategyContext", "StrategyOptions", "StrategyParams",
           "build_strategy", "register_strategy", "resolve_run", "strategy_keys"]
