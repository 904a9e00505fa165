"""Package hygiene: cheap import, lazy public names, typed, no print in the library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import voicebank

SRC = Path(voicebank.__file__).parent


def test_import_does_no_heavy_work():
    code = ("import sys, voicebank, voicebank.cli; "
            "print(sorted(m for m in ('torch', 'numpy', 'soundfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_public_names_resolve():
    for name in voicebank.__all__:
        assert getattr(voicebank, name) is not None


def test_py_typed_marker():
    assert (SRC / "py.typed").exists()


def test_no_print_in_the_library():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
