"""Policy registry: ``type`` name -> policy class. Built-ins are listed explicitly (no directory
walking); third-party policies register through the ``rollguard.policies`` entry-point group.

A policy class takes its config ``params`` as keyword arguments and raises ``ValueError`` (or
``TypeError``) for bad ones; ``build`` turns that into a message naming the policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from policies.base import Policy

_BUILTIN_MODULES = (
    "policies.builtin.pii",
    "policies.builtin.secrets",
    "policies.builtin.prompt_injection",
    "policies.builtin.system_prompt_leak",
    "policies.builtin.limits",
    "policies.builtin.invisible_text",
    "policies.builtin.content_safety",
)

_TYPES: dict[str, Callable[..., Policy]] = {}
_loaded = False

P = TypeVar("P", bound=type)


def register(cls: P) -> P:
    """Class decorator: make ``cls`` available under ``cls.type_name``."""
    name = cls.type_name  # type: ignore[attr-defined]
    _TYPES[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    for ep in entry_points(group="rollguard.policies"):
        _TYPES.setdefault(ep.name, ep.load())
    _loaded = True


def available() -> list[str]:
    """Registered policy type names, sorted."""
    _load()
    return sorted(_TYPES)


def build(type_name: str, params: dict[str, Any]) -> Policy:
    """Instantiate policy ``type_name`` with ``params``.

    Raises ``KeyError`` for an unknown type and ``ValueError`` for bad params (message names the
    offending parameter).
    """
    _load()
    try:
        factory = _TYPES[type_name]
    except KeyError:
        raise KeyError(f"unknown policy type {type_name!r}; known: {', '.join(sorted(_TYPES))}") from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"bad params for policy type {type_name!r}: {exc}") from exc
