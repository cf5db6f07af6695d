"""Wildcard routes, as LiteLLM's proxy has them (docs.litellm.ai/docs/proxy/configs, "Provider
specific wildcard routing"; litellm ``PatternMatchRouter``): a ``model_name`` with ``*`` (``"*"``,
``"openai/*"``, ``"team-*"``) serves every requested model it matches, and each ``*`` of the
deployment's ``litellm_params.model`` is replaced by what the corresponding ``*`` of the request
matched, in order::

    model_name: "*"          litellm_params.model: "openai/*"   "gpt-4o"        -> openai/gpt-4o
    model_name: "openai/*"   litellm_params.model: "openai/*"   "openai/gpt-4o" -> openai/gpt-4o
    model_name: "fast-*"     litellm_params.model: "openai/small" "fast-x"      -> openai/small

A configured alias always wins over a pattern; among patterns the most specific wins (the
longest, then the one with more ``*``; LiteLLM's order), then config order. A ``*`` in
``model_name`` matches one or more characters (also ``/``; never none, unlike LiteLLM's ``.*``:
``openai/`` must not send an empty model upstream, it is a 404 ``model_not_found``); the match is
anchored at both ends. More request parts than the model has ``*``: the requested name is sent
as is (LiteLLM's rule); fewer ``model_name`` ``*`` than the model has is refused at load
(``rollguard.litellm_settings.ModelEntry``), so no ``*`` is ever sent upstream.

The deployments made for one requested name keep the pattern's ``alias`` (spans, metric labels
and rpm/tpm budgets name the configured pattern, never the client's string) and are cached, at
most ``MAX_NAMES`` names (then the cache starts again), so random names cannot grow memory.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any, Protocol

from gateway.upstream.transports import Deployment
from rollguard.settings import ModelEntry

MAX_NAMES = 1024
"""Requested names whose deployments are kept (a bound on memory, not on what is served)."""


class _Tables(Protocol):
    """The router's routing tables (``gateway.upstream.router.Upstream``) a name is added to."""

    _deployments: dict[str, list[Deployment]]
    _rr: dict[str, Any]
    _chains: dict[str, list[str]]
    _fallbacks: dict[str, list[str]]


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", "(.+)"), re.DOTALL)


class Wildcards:
    """The wildcard ``model_name`` patterns of a ``model_list``. ``match(name)``: the pattern that
    serves ``name`` (None: none); ``deployments(name)``: its deployments for ``name``."""

    def __init__(self, entries: Iterable[tuple[int, ModelEntry]]) -> None:
        found: dict[str, list[tuple[int, ModelEntry]]] = {}
        for index, entry in entries:
            if "*" in entry.model_name:
                found.setdefault(entry.model_name, []).append((index, entry))
        order = sorted(found, key=lambda p: (len(p), p.count("*")), reverse=True)  # stable
        self._patterns = [(p, _regex(p), found[p]) for p in order]
        self._made: dict[str, tuple[str, list[Deployment]]] = {}
        self.any = bool(self._patterns)
        """Whether any pattern is configured (read on the hot path: an attribute, not a call)."""

    def made(self, name: str) -> bool:
        """Whether ``name`` is a requested name added by ``add`` (not a configured alias)."""
        return name in self._made

    def add(self, name: str, router: _Tables) -> bool:
        """Add ``name`` to the router's tables when a pattern serves it: its deployments, a
        round-robin counter and its fallback chain (the pattern's fallbacks). False when no
        pattern matches. Past ``MAX_NAMES`` names the added ones are dropped first."""
        if len(self._made) >= MAX_NAMES:
            for old in self._made:
                for table in (router._deployments, router._rr, router._chains):
                    table.pop(old, None)
            self._made.clear()
        found = self.deployments(name)
        if found is None:
            return False
        pattern, deps = found
        router._deployments[name] = deps
        router._rr[name] = itertools.count()
        fallbacks = [n for n in router._fallbacks.get(pattern, ()) if n in router._deployments]
        router._chains[name] = [name, *fallbacks]
        return True

    def match(self, name: str) -> str | None:
        """The configured pattern (a ``model_name``) that serves ``name``, or None."""
        for pattern, regex, _ in self._patterns:
            if regex.fullmatch(name):
                return pattern
        return None

    def deployments(self, name: str) -> tuple[str, list[Deployment]] | None:
        """(pattern, its deployments resolved for ``name``), or None when no pattern matches.
        Raises ``ConfigError`` only for what ``Deployment.from_entry`` refuses (checked at startup
        for the pattern itself)."""
        made = self._made.get(name)
        if made is not None:
            return made
        for pattern, regex, entries in self._patterns:
            m = regex.fullmatch(name)
            if m is None:
                continue
            deps = [self._resolve(pattern, name, m.groups(), i, e) for i, e in entries]
            self._made[name] = (pattern, deps)
            return pattern, deps
        return None

    @staticmethod
    def _resolve(
        pattern: str, name: str, parts: tuple[str, ...], index: int, entry: ModelEntry
    ) -> Deployment:
        """The deployment of ``entry`` (model_list[index], served as ``pattern``) for ``name``."""
        model = str(entry.litellm_params["model"])
        if "*" in model:
            if len(parts) > model.count("*"):
                model = name
            else:
                for part in parts:
                    model = model.replace("*", part, 1)
        params = {**entry.litellm_params, "model": model}
        concrete = ModelEntry(model_name=pattern, litellm_params=params, model_info=entry.model_info)
        return Deployment.from_entry(concrete, index)
