"""``assist keys [PATTERN]``: every config key with its type, default, meaning and the strategies
that take it.

A thin reader of the classes that declare the keys (docs/architecture.md, "Options"): the flat
keys through :func:`assist.strategies.resolve.describe_keys` (a key's meaning is the comment
beside its declaration, or its field's ``description``), and each peer strategy's
``strategy_options`` model. Nothing about a key is written down here.
"""

from __future__ import annotations

import fnmatch
import typing
from dataclasses import dataclass
from typing import Any, Optional

import click
from pydantic.fields import FieldInfo

from assist.config import ConfigError, TrainConfig

# how a strategy key reads when the key chooses the strategy rather than configures one
CHOOSES = "chooses the strategy"


@dataclass(frozen=True)
class KeyInfo:
    key: str
    type: str
    default: str
    meaning: str
    taken_by: Optional[tuple[str, ...]]  # None: a key of every run; () with ``chooses``: selects one
    chooses: bool = False

    @property
    def section(self) -> int:
        """Where the listing shows the key: an index into ``SECTIONS``."""
        if self.key.startswith("strategy_options."):
            return 2
        return 0 if self.taken_by is None and not self.chooses else 1


SECTIONS = ("keys of every run", "strategy keys: set one only for a strategy that takes it",
            "strategy_options: the peer methods' options (strategy_options.KEY=value)")


def _bounds(metadata: list[Any]) -> str:
    """``> 0``, ``>= 0, < 1`` ... from a field's annotated-types constraints."""
    marks = []
    for item in metadata:
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attribute, None)
            if value is not None:
                marks.append(f"{sign} {value:g}" if isinstance(value, (int, float)) else f"{sign} {value}")
    return ", ".join(marks)


def type_text(annotation: Any, metadata: list[Any] = ()) -> str:
    """A field's type as a user types its value: ``int > 0``, ``hard|soft|none``, ``float | null``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        parts = [type_text(a, metadata) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return "list of " + (type_text(inner[0]) if inner else "values")
    if origin is dict:
        return "mapping"
    name = getattr(annotation, "__name__", str(annotation))
    bounds = _bounds(list(metadata)) if name in ("int", "float") else ""
    return f"{name} {bounds}".strip()


def value_text(value: Any) -> str:
    """A default as it is written on the command line (YAML)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (list, dict)):
        return str(value).replace("'", "")
    return str(value)


def _info(key: str, field: FieldInfo, taken_by: Optional[tuple[str, ...]], chooses: bool = False) -> KeyInfo:
    default = field.get_default(call_default_factory=True)
    return KeyInfo(key, type_text(field.annotation, field.metadata), value_text(default),
                   field.description or "(no description)", taken_by, chooses)


def key_infos() -> list[KeyInfo]:
    """Every key in ``config.yaml``'s order (``assist.strategies.resolve.describe_keys``: type,
    default, meaning, the strategies taking it), then each ``strategy_options`` entry (one per
    type, default and meaning, with the strategies that share it)."""
    from assist.strategies import STRATEGIES
    from assist.strategies.resolve import CHOICE_KEYS, describe_keys

    options: dict[tuple[str, str, str, str], list[str]] = {}
    option_fields: dict[tuple[str, str, str, str], FieldInfo] = {}
    for name in STRATEGIES.names():
        field = STRATEGIES.resolve(name).Params.model_fields.get("strategy_options")
        if field is None:
            continue
        for option, option_field in field.annotation.model_fields.items():
            info = _info(f"strategy_options.{option}", option_field, None)
            ident = (info.key, info.type, info.default, info.meaning)
            options.setdefault(ident, []).append(name)
            option_fields[ident] = option_field
    infos = []
    for row in describe_keys():
        key = row["key"]
        run_key = key in TrainConfig.model_fields
        field = TrainConfig.model_fields.get(key) if run_key else next(
            (STRATEGIES.resolve(name).Params.model_fields.get(key) for name in row["strategies"]), None)
        kind = type_text(field.annotation, field.metadata) if field is not None else row["type"]
        meaning = row["meaning"] or "(no description)"
        if key in CHOICE_KEYS:
            taken, chooses = (), True
        else:
            taken, chooses = (None if run_key else tuple(row["strategies"])), False
        infos.append(KeyInfo(key, kind, value_text(row["default"]), meaning, taken, chooses))
    for ident, names in options.items():  # by strategy, each in its declared order
        infos.append(_info(ident[0], option_fields[ident], tuple(names)))
    return infos


def presets() -> dict[str, str]:
    """Preset name -> the strategy it sets (``strategy=max_loss`` is batchwise with settings)."""
    from assist.validation import PRESETS

    return {name: make({})["strategy"] for name, make in PRESETS.items()}


def matching(infos: list[KeyInfo], pattern: Optional[str]) -> list[KeyInfo]:
    """The keys ``pattern`` names: part of a key's name, a glob (``select_*``), or a strategy's
    or preset's name (the keys it takes)."""
    if not pattern:
        return infos
    text = pattern.lower()
    strategy = presets().get(text, text)
    globbing = any(c in text for c in "*?[")
    return [info for info in infos
            if (fnmatch.fnmatch(info.key, text) if globbing else text in info.key.lower())
            or strategy in (info.taken_by or ())]


def format_keys(infos: list[KeyInfo], width: int = 100) -> str:
    """Per key: ``key  type  = default``, its meaning, and which strategies take it."""
    lines: list[str] = []
    section = None
    for info in sorted(infos, key=lambda info: info.section):  # stable: the config's order within
        if info.section != section:
            section = info.section
            lines += [""] if lines else []
            lines.append(f"== {SECTIONS[section]}")
        lines.append(f"{info.key}  ({info.type})  default: {info.default}")
        lines.append(f"    {info.meaning}")
        if info.chooses:
            lines.append(f"    {CHOOSES}")
        elif info.taken_by is not None:
            lines.append(click.wrap_text(f"taken by: {', '.join(info.taken_by) or 'no strategy'}", width,
                                         initial_indent="    ", subsequent_indent="        "))
    return "\n".join(lines)


@click.command("keys")
@click.argument("pattern", required=False)
def keys_command(pattern: Optional[str]) -> None:
    """Every config key (key=value) with its type, default, meaning and the strategies that take
    it. PATTERN: part of a key's name, a glob (select_*), or a strategy's name (its keys)."""
    infos = matching(key_infos(), pattern)
    if not infos:
        raise ConfigError(f"keys: no key matches {pattern!r}; `assist keys` lists them all")
    click.echo(format_keys(infos))
    if not pattern:
        shown = ", ".join(f"{name} ({strategy})" for name, strategy in presets().items())
        click.echo(f"\npresets (strategy=NAME, a strategy with the field's settings): {shown}")
