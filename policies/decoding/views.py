"""Decoded views of a text, bounded in depth, size and time.

``decoded_views(text)`` returns ``[DecodedView(encoding, text), ...]``: for every encoding found
(``codecs.BINARY_CODECS``, ``ciphers.CIPHERS``) the text with its spans decoded, then, up to
``DecodeLimits.max_depth`` levels, the views of those views (``"base64>rot13"``). The original is
not included. A text the pre-scan (``prescan.looks_encoded``) passes over costs one regex search.

Bounds (``DecodeLimits``; defaults in brackets), so decoding can never become a denial of service:
``max_depth`` [3] nesting levels, ``max_views`` [8] views, ``max_span_chars`` [65,536] characters of
one encoded span decoded, ``max_total_chars`` [65,536] decoded characters in all views together,
``max_input_chars`` [262,144] characters of the input scanned, and ``max_ms`` [25] milliseconds of
wall time (checked between decoders). A 1 MB prompt of nested base64 decodes its first 64 KB to
depth 3 and stops (measured in ``tests/policies/test_decoding.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from policies.decoding.ciphers import CIPHERS
from policies.decoding.codecs import BINARY_CODECS
from policies.decoding.prescan import looks_encoded

__all__ = ["DecodeLimits", "DecodedView", "decoded_views"]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on decoding (see the module docstring); characters are Unicode code points."""

    max_depth: int = 3
    max_views: int = 8
    max_span_chars: int = 65_536
    max_total_chars: int = 65_536
    max_input_chars: int = 262_144
    max_ms: float = 25.0


@dataclass(frozen=True, slots=True)
class DecodedView:
    """One decoded reading of a text: ``encoding`` names the chain (``base64`` or
    ``base64>rot13``), ``text`` is the reading (framing kept, spans decoded)."""

    encoding: str
    text: str


_DECODERS = BINARY_CODECS + CIPHERS


def decoded_views(text: str, limits: DecodeLimits | None = None) -> list[DecodedView]:
    """The decoded views of ``text`` (see the module docstring), breadth first, at most
    ``limits.max_views``; ``[]`` when nothing decodes. Never raises for a ``str``: a decoder that
    fails is skipped."""
    limits = limits or DecodeLimits()
    deadline = time.perf_counter() + limits.max_ms / 1000.0
    out: list[DecodedView] = []
    seen = {text}
    budget = limits.max_total_chars
    frontier: list[tuple[str, str]] = [("", text[: limits.max_input_chars])]
    for _ in range(limits.max_depth):
        nxt: list[tuple[str, str]] = []
        for chain, source in frontier:
            if not looks_encoded(source):
                continue
            for name, decode in _DECODERS:
                if len(out) >= limits.max_views or budget <= 0 or time.perf_counter() > deadline:
                    return out
                try:
                    view = decode(source, min(limits.max_span_chars, budget))
                except Exception:  # noqa: S112 - a decoder bug must not fail the request
                    continue
                if view is None:
                    continue
                view = view[:budget]
                if view in seen or not view.strip():
                    continue
                seen.add(view)
                budget -= len(view)
                label = f"{chain}>{name}" if chain else name
                out.append(DecodedView(label, view))
                nxt.append((label, view))
        if not nxt:
            break
        frontier = nxt
    return out
