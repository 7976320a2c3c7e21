"""The strategy registry: a leaf, so a strategy module registers itself without importing
its own package (timm's ``_registry`` pattern; docs/architecture.md, "Adding a strategy")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assist.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from assist.strategies.base import Strategy

STRATEGIES: "Registry[Strategy]" = Registry("strategy")


def register_strategy(cls: type["Strategy"]) -> type["Strategy"]:
    STRATEGIES.register(cls.name)(cls)
    return cls
