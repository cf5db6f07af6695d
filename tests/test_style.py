"""The house style is part of the build: ruff (lint + format) and mypy --strict on the packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_lint_and_format() -> None:
    lint = _run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


@pytest.mark.slow
def test_mypy_strict_on_the_packages() -> None:
    proc = _run(str(BIN / "mypy"))
    assert proc.returncode == 0, proc.stdout[-4000:]


# Sizes the owner asked for (issue 7): modules with one job, functions that fit on a screen.
MAX_GATEWAY_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
PACKAGES = ("rollguard", "policies", "detectors", "gateway")


def _long_functions(path: Path, root: Path = REPO) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} is {length} lines")
    return out


def test_no_gateway_module_over_500_lines() -> None:
    big = [
        f"{p.relative_to(REPO)} has {n} lines"
        for p in sorted((REPO / "gateway").rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_GATEWAY_MODULE_LINES
    ]
    assert not big, "\n".join(big)


def test_no_function_over_60_lines_outside_tests_and_bench() -> None:
    long = [
        line for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py")) for line in _long_functions(p)
    ]
    assert not long, "\n".join(long)


def test_the_size_check_catches_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def too_long():\n{body}\n\n\ndef short():\n    return 1\n", encoding="utf-8")
    assert _long_functions(probe, tmp_path) == [f"probe.py:1 too_long is {MAX_FUNCTION_LINES + 1} lines"]
