"""Decoded views of a text, bounded in depth, size and time.

``decoded_views(text)`` returns ``[DecodedView(encoding, text), ...]``: for every encoding found
(``codecs.BINARY_CODECS``, ``ciphers.CIPHERS``) the text with its spans decoded, then, up to
``DecodeLimits.max_depth`` levels, the views of those views (``"base64>rot13"``). The original is
not included. A text the pre-scan (``prescan.looks_encoded``) passes over costs one regex search.

Bounds (``DecodeLimits``; defaults in brackets), so decoding can never become a denial of service:
``max_depth`` [3] nesting levels, ``max_views`` [12] views, ``max_span_chars`` [65,536] characters of
one encoded span decoded, ``max_total_chars`` [65,536] decoded characters in all views together,
``max_input_chars`` [262,144] characters of the input scanned, ``max_work_chars`` [1,048,576]
characters handed to decoders in all (each decoder call costs the length of the text it scans;
checked before each call, so the decoders that run, and the views, are a function of the text
alone), and ``max_ms`` [1,000] milliseconds of wall time, a backstop that normal operation never
reaches (checked between decoders). Every bound but ``max_ms`` counts work, not time: a wall-clock
budget (25 ms until 2026-12) cut a 320 KB CSV's decoding at a point that moved with the machine's
load, so one request got a block in one run and a flag in the next. A 1 MB prompt of nested
base64 decodes its first 64 KB to depth 3 and stops (measured in ``tests/policies/test_decoding.py``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from policies.decoding.ciphers import CIPHERS
from policies.decoding.codecs import BINARY_CODECS, CLOSE, OPEN
from policies.decoding.prescan import looks_encoded

__all__ = ["NON_ASCII_ONLY", "DecodeLimits", "DecodedView", "decoded_views"]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on decoding (see the module docstring); characters are Unicode code points."""

    max_depth: int = 3
    max_views: int = 12
    max_span_chars: int = 65_536
    max_total_chars: int = 65_536
    max_input_chars: int = 262_144
    max_work_chars: int = 1_048_576
    max_ms: float = 1_000.0


@dataclass(frozen=True, slots=True)
class DecodedView:
    """One decoded reading of a text: ``encoding`` names the chain (``base64`` or
    ``base64>rot13``), ``text`` is the reading; ``part`` is ``text`` (framing kept, spans decoded)
    or ``payload`` (the decoded spans alone: a classifier sees an override without the benign
    framing around it)."""

    encoding: str
    text: str
    part: str = "text"


_DECODERS = BINARY_CODECS + CIPHERS
_INVOLUTIONS = frozenset({"rot13", "atbash"})
NON_ASCII_ONLY = frozenset({"base2048", "emoji", "unicode_tags", "zalgo", "braille", "emoji_letters"})
"""Decoders whose patterns match only non-ASCII characters (Braille, tag characters, combining
marks, emoji, enclosed letters, base2048's alphabet): on an ASCII text they find nothing, so they
are not called (one ``str.isascii()`` instead of six scans; most flagged texts are ASCII)."""


def decoded_views(text: str, limits: DecodeLimits | None = None) -> list[DecodedView]:
    """The decoded views of ``text`` (see the module docstring), breadth first, at most
    ``limits.max_views``; ``[]`` when nothing decodes. Never raises for a ``str``: a decoder that
    fails is skipped."""
    limits = limits or DecodeLimits()
    deadline = time.perf_counter() + limits.max_ms / 1000.0
    out: list[DecodedView] = []
    seen = {("text", text)}
    budget = limits.max_total_chars
    work = limits.max_work_chars
    source_text = text[: limits.max_input_chars]
    if OPEN in source_text or CLOSE in source_text:
        source_text = source_text.replace(OPEN, " ").replace(CLOSE, " ")
    frontier: list[tuple[str, str]] = [("", source_text)]
    for _ in range(limits.max_depth):
        nxt: list[tuple[str, str]] = []
        for chain, source in frontier:
            if not looks_encoded(source):
                continue
            ascii_only = source.isascii()
            for name, decode in _DECODERS:
                if name in _INVOLUTIONS and chain.endswith(name):
                    continue  # ROT13 of ROT13 is the text again
                if ascii_only and name in NON_ASCII_ONLY:
                    continue  # nothing to find: charged no work
                work -= len(source)
                if len(out) >= limits.max_views or budget <= 0 or work < 0:
                    return out
                if time.perf_counter() > deadline:  # the backstop (module docstring)
                    return out
                try:
                    marked = decode(source, min(limits.max_span_chars, budget))
                except Exception:  # noqa: S112 - a decoder bug must not fail the request
                    continue
                if marked is None:
                    continue
                label = f"{chain}>{name}" if chain else name
                for view in _readings(label, marked[:budget]):
                    if (
                        budget <= 0
                        or (view.part, view.text) in seen
                        or not view.text.strip()
                        or len(out) >= limits.max_views
                    ):
                        continue
                    if len(view.text) > budget:
                        view = DecodedView(view.encoding, view.text[:budget], view.part)
                    seen.add((view.part, view.text))
                    budget -= len(view.text)
                    out.append(view)
                    if view.part == "text":
                        nxt.append((label, view.text))
        if not nxt:
            break
        frontier = nxt
    return out


_SPAN = re.compile(f"{OPEN}(.*?){CLOSE}", re.DOTALL)


def _readings(label: str, marked: str) -> list[DecodedView]:
    """The ``text`` reading of a decoder's marked output and the ``payload`` (the decoded spans
    alone; the same text when the whole text was encoded: it is judged as a payload too)."""
    full = marked.replace(OPEN, "").replace(CLOSE, "")
    spans = [s.strip() for s in _SPAN.findall(marked) if s.strip()]
    out = [DecodedView(label, full)]
    payload = "\n".join(spans)
    if payload:
        out.append(DecodedView(label, payload, "payload"))
    return out
