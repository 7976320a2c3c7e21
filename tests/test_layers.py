"""docs/architecture.md's layer table is the import rule: every module of src/assist sits in one
layer, imports point down the table or stay in their layer, and no chain of imports comes back
round to where it started (imports made only for type checking aside)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "assist"


def layers() -> list[tuple[str, list[str]]]:
    """The table's rows, top layer first: (layer, the paths it lists, relative to src/assist)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("layer", "") and not set(cells[0]) <= set("- "):
            rows.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def layer_of(module: str) -> int:
    """Index (0: top) of the layer listing the module, by its longest listed path."""
    relative = MODULES[module].relative_to(SRC).as_posix()
    best, index = -1, None
    for i, (_, paths) in enumerate(layers()):
        for listed in paths:
            if (relative == listed or (listed.endswith("/") and relative.startswith(listed))) and len(listed) > best:
                best, index = len(listed), i
    if index is None:
        raise AssertionError(f"{relative} is in no layer of docs/architecture.md's table")
    return index


def _type_only(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(module: str) -> set[str]:
    """The ASSIST modules ``module`` imports anywhere (a submodule where ``from package import
    name`` names one), leaving out ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_only(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "assist")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "assist":
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else child.module)
            visit(child)

    visit(ast.parse(MODULES[module].read_text()))
    return {name for name in found if name in MODULES and name != module}


def test_every_module_sits_in_one_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_points_up_a_layer():
    names = [name for name, _ in layers()]
    upward = sorted(f"{module} ({names[layer_of(module)]}) imports {target} ({names[layer_of(target)]})"
                    for module in MODULES for target in imports(module) if layer_of(target) < layer_of(module))
    assert upward == []


def test_no_import_comes_back_round():
    graph = {module: imports(module) for module in MODULES}
    circles = []
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                walk(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert circles == []


def test_the_config_is_a_leaf_without_strategy_keys():
    assert imports("assist.config") == set()
    from assist.config import TrainConfig
    from assist.strategies import strategy_keys

    assert not set(TrainConfig.model_fields) & set(strategy_keys())

