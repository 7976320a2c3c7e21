"""The sweep specs shipped with ASSIST (``assist examples``): the thesis's experiments and
others, each runnable by name (``assist sweep thesis-mnist-fcnets --dry-run``)."""

from __future__ import annotations

import re
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

    @property
    def header(self) -> list[str]:
        """The comment lines above ``name:``, without their ``# ``."""
        lines = []
        for line in self.path.read_text().splitlines():
            if not line.startswith("#"):
                break
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        return lines

    @property
    def declared_runs(self) -> Optional[int]:
        """The run count the header states (``Runs: N``), which a test holds to the plan."""
        for line in self.header:
            found = re.match(r"Runs: (\d+)\b", line)
            if found:
                return int(found.group(1))
        return None

    def commands(self) -> dict[str, str]:
        """The header's commands by their heading: "full" (full scale) and "cpu" (reduced scale
        on a CPU), each joined over its continuation lines."""
        found: dict[str, str] = {}
        heading, pending = None, ""
        for line in self.header:
            text = line.strip()
            if text.startswith("Full scale"):
                heading = "full"
            elif text.startswith("Reduced scale"):
                heading = "cpu"
            elif text.startswith("assist sweep") or pending:
                pending += text.rstrip("\\").strip() + " "
                if not text.endswith("\\"):
                    if heading is not None and heading not in found:
                        found[heading] = pending.strip()
                    pending = ""
        return found


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
