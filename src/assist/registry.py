"""Name-based registries for models, data sets and strategies.

A registry maps a name to a factory. Besides exact names it supports *families*: a prefix
plus a parser for the rest of the name (``fcnet`` + ``1000`` -> ``fcnet1000``), so that
``create("fcnet250")`` works without registering every width.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown name; the message lists what is available."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._families: dict[str, tuple[Callable[[str], Any], Callable[..., T], list[str]]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test's own entry, registered for the test only)."""
        del self._entries[name]

    def register_family(
        self, prefix: str, parse: Callable[[str], Any], examples: list[str]
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register names ``prefix + suffix``; ``parse(suffix)`` gives the family argument
        (raise ValueError for a bad suffix). ``examples`` are listed as the family's members."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self._families[prefix] = (parse, factory, examples)
            return factory

        return decorator

    def names(self, pattern: str = "*") -> list[str]:
        listed = list(self._entries)
        for _, _, examples in self._families.values():
            listed.extend(examples)
        return sorted(n for n in dict.fromkeys(listed) if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except RegistryError:
            return False
        return True

    def resolve(self, name: str) -> Callable[..., T]:
        """The factory for ``name`` (family members come back with their argument bound)."""
        if name in self._entries:
            return self._entries[name]
        for prefix, (parse, factory, _) in self._families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                try:
                    argument = parse(name[len(prefix):])
                except ValueError:
                    continue
                return lambda *a, _arg=argument, **kw: factory(_arg, *a, **kw)
        families = ", ".join(f"{p}<N>" for p in self._families)
        known = ", ".join(sorted(self._entries)) + (f", {families}" if families else "")
        raise RegistryError(f"unknown {self.kind} {name!r}; available: {known}")

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.resolve(name)(*args, **kwargs)
