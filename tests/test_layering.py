"""The layers import only what is below them (parsed from the source, so nothing is imported to check it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "voicebank"
# each layer may import the ones listed after it, never one before it
LAYERS = ["cli", "library", "store", "engine", "voice", "models", "audio"]
SHELL_ONLY = {"typer", "click", "rich", "fastapi", "uvicorn", "starlette", "ray", "httpx"}


def imports_of(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    package = ".".join(["voicebank", *path.relative_to(SRC).parent.parts])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out.add(mod)
                if not node.module:
                    out.update(f"{mod}.{a.name}" for a in node.names)
            elif node.module:
                out.add(node.module)
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "voicebank" and parts[1] in LAYERS else None


SHELLS = ("cli", "service", "batch", "client.py")
"""The shells: the command line, the HTTP service and its client, the batch runner."""
CORE = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in SHELLS]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(SRC)))
def test_core_imports_no_shell_library(path):
    bad = {m for m in imports_of(path) if m.split(".")[0] in SHELL_ONLY or layer_of(m) == "cli"}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_layers_import_downwards(path):
    own = path.relative_to(SRC).parts[0]
    if own not in LAYERS:
        return
    rank = LAYERS.index(own)
    upward = {m for m in imports_of(path) if (lay := layer_of(m)) is not None and LAYERS.index(lay) < rank}
    assert not upward, f"{path.relative_to(SRC)} ({own}) imports a layer above it: {sorted(upward)}"


def test_store_imports_no_torch():
    code = ("import sys, voicebank.store, voicebank.store.store; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_module_is_a_hall():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 560}
    assert not long, f"modules over ~500 lines: {long}"
