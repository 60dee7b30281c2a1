"""The package's layout: imports point down the layers, and modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vllm_mobo"

#: Layer of each top-level part of the package: a module may import from its own part, and from parts of a lower
#: layer only (same-layer parts are independent of each other).
LAYERS = {
    "io": 0, "resources": 0, "records": 0, "hardware": 0, "engine_args": 0,
    "config": 1,
    "search": 2, "measure": 2,
    "report": 3,
    "profiling": 4, "replay": 4, "slurm": 4, "confirm": 4,
    "cli": 5,
}
#: Longer modules that are one idea each.
LONG_MODULES = {
    "replay/table.py": "ReplayTable: one class answering a search from a measured table",
    "engine_args.py": "vLLM's engine arguments read from its parser: translation to flags and validation",
}
MAX_LINES = 400


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def imports_of(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (absolute names), at any depth of the file."""
    name = "vllm_mobo." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("vllm_mobo"):
                found |= {f"{target}.{a.name}" if target.count(".") == 0 else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vllm_mobo")}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_part_has_a_layer():
    parts = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES} - {"__init__"}
    assert parts <= set(LAYERS), parts - set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        return
    wrong = []
    for target in imports_of(path):
        other = part(target)
        if other != own and other in LAYERS and LAYERS[other] >= LAYERS[own]:
            wrong.append(f"{target} (layer {LAYERS[other]})")
    assert not wrong, f"{path.relative_to(PACKAGE)} (part {own}, layer {LAYERS[own]}) imports {wrong}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_short(path):
    rel = path.relative_to(PACKAGE).as_posix()
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or rel in LONG_MODULES, f"{rel}: {lines} lines"
