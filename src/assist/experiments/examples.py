"""The sweep specs shipped with ASSIST (``assist examples``): the thesis's experiments and
others, each runnable by name (``assist sweep thesis-mnist-fcnets --dry-run``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass(frozen=True)
class Example:
    name: str
    description: str
    path: Path


def examples() -> list[Example]:
    """Every shipped spec, by name."""
    found = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        found.append(Example(str(data.get("name") or path.stem), str(data.get("description") or ""), path))
    return found


def resolve_example(spec: str | Path) -> Optional[Path]:
    """The shipped spec called ``spec`` (its name or file stem), when ``spec`` is no file."""
    if Path(spec).is_file():
        return None
    wanted = str(spec).removesuffix(".yaml")
    for example in examples():
        if wanted in (example.name, example.path.stem):
            return example.path
    return None
