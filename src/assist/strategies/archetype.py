"""The archetype (Algorithm 1): a fresh shuffle each epoch, every sample trained."""

from assist.strategies import register_strategy
from assist.strategies.base import Strategy


@register_strategy
class Archetype(Strategy):
    name = "archetype"
