"""The package's shape, parsed from the source (nothing is imported to check it): every part imports only the
parts ranked below it, no two modules import each other (directly or round a longer loop, imports inside
functions included), the core imports no shell library, and no module grows into a hall."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "voicebank"

RANKS = ["__init__", "cli", "service", "batch", "client", "library", "cohort", "similarity", "duplicates", "store",
         "engine", "voice", "models", "audio", "settings", "fileio", "options", "progress", "chatterbox", "errors",
         "_version", "ordered", "cpus"]
"""Every part of the package, top to bottom: a subpackage or a root module (``__init__`` is the package facade).
A part may import the parts after it, never one before it."""
SHELL_ONLY = {"typer", "click", "rich", "fastapi", "uvicorn", "starlette", "ray", "httpx"}
SHELLS = ("cli", "service", "batch", "client")
"""The shells: the command line, the HTTP service, the batch runner and the service's client."""

MAX_LINES = 500
TOO_LONG: dict[str, int] = {}
"""Modules allowed over :data:`MAX_LINES` for now, with their ceiling: this list may only shrink."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(name: str) -> str | None:
    """The module (or package) of the package's own that ``name`` lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(module: str) -> frozenset[str]:
    """The package's own modules ``module`` imports anywhere in its source (top level, inside functions, under
    ``TYPE_CHECKING``), relative imports resolved; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] == "voicebank")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "voicebank":
                source = node.module
            else:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                out.add(full if full in MODULES else _resolve(source))
    out.discard(None)
    out.discard(module)
    return frozenset(m for m in out if m is not None)


def external_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_every_part_is_ranked():
    unranked = {part_of(m) for m in MODULES} - set(RANKS)
    assert not unranked, f"rank these parts in RANKS: {sorted(unranked)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_parts_import_downwards(module):
    rank = RANKS.index(part_of(module))
    upward = sorted(m for m in imports_of(module) if part_of(m) != part_of(module) and RANKS.index(part_of(m)) < rank)
    assert not upward, f"{module} ({part_of(module)}) imports a part ranked above it: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m) not in (*SHELLS, "__init__")))
def test_core_imports_no_shell_library(module):
    bad = sorted(external_imports(MODULES[module]) & SHELL_ONLY)
    assert not bad, f"{module} imports {bad}"


def import_cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    assert import_cycles({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
                          "d": frozenset({"a"})}) == [["a", "b", "c"]]
    assert import_cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_cycles():
    cycles = import_cycles({m: imports_of(m) for m in MODULES})
    assert not cycles, f"modules that import each other (directly or round a loop): {cycles}"


def test_store_imports_no_torch():
    code = "import sys, voicebank.store, voicebank.store.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_module_is_a_hall():
    lines = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    too_long = {m: n for m, n in lines.items() if n > TOO_LONG.get(m, MAX_LINES)}
    assert not too_long, f"modules over {MAX_LINES} lines (or over their allowance in TOO_LONG): {too_long}"
    fixed = {m: ceiling for m, ceiling in TOO_LONG.items() if lines.get(m, 0) <= MAX_LINES}
    assert not fixed, f"these are {MAX_LINES} lines or fewer now: take them off TOO_LONG: {fixed}"
