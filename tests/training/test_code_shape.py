"""training/ stays readable: no function longer than a screen (80 lines, decorators and docstring in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MAX_LINES = 80
TRAINING = Path(__file__).resolve().parents[2] / "training"


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    """Return "file:function (N lines)" for every function in ``path`` longer than ``limit`` lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = node.end_lineno - start + 1
            if lines > limit:
                found.append(f"{path.name}:{node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("path", sorted(TRAINING.glob("*.py")), ids=lambda p: p.name)
def test_no_function_in_training_is_longer_than_80_lines(path):
    assert long_functions(path) == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n")
    assert long_functions(tmp_path / "long.py") == ["long.py:too_long (81 lines)"]
