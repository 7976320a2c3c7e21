"""The archetype (Algorithm 1): a fresh shuffle each epoch, every sample trained."""

from assist.strategies.base import Strategy
from assist.strategies.registry import register_strategy


@register_strategy
class Archetype(Strategy):
    name = "archetype"
