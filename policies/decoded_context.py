"""Decoded views of a check context: the same request (or completion) with one text replaced by a
decoded reading of it, so every read-only policy can judge what an encoding hid
(``policies.pipeline``; the decoding itself is ``policies.decoding``).

``pre_call``: each text of the current turn's ``user`` / ``tool`` / ``function`` messages (the
operator's ``system`` / ``developer`` messages are trusted and not decoded). ``post_call`` /
``stream``: the completion text. Each view is a shallow copy of the context in which only that
one text differs (the message's ``content`` becomes the decoded string); the vault is fresh, so a
transform run on a view cannot issue placeholders into the real request.

A ``payload`` reading (the decoded spans alone) is judged bare and once more presented as quoted
data (``Decoded text:`` and the text in triple quotes), so the injection policy's data rules
(``policies.segments``) judge it like a pasted document. At ``pre_call`` a payload of 3+ words is
also judged as a *reply* (part ``reply``: a ``stream`` context whose window is the payload): the
answer to "decode this" is the decoded text, so what an output policy would stop in a reply
(slurs, hateful or harmful content: ``content_safety``'s output model and actions) is stopped
when it arrives encoded in a request, before the model repeats it. A stream window, not a whole
completion: a payload is short like a window, and the stream operating point is the one set for
about 1 % of benign replies (the whole-completion one flagged "Explain how a rainbow forms" at
0.53, an output model reading a request).

Cost: one pre-scan regex per text (``policies.decoding.looks_encoded``); nothing else runs on a
text that looks plain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policies.base import CheckContext, RedactionVault
from policies.builtin.locations import iter_message_texts
from policies.decoding import DecodedView, DecodeLimits, decoded_views, looks_encoded
from rollguard.types import Stage

__all__ = ["ContextView", "context_views"]

DEFAULT_LIMITS = DecodeLimits()

_DATA_ROLES = frozenset({"user", "tool", "function"})

_REPLY_WORDS = 3
"""A payload is judged as a reply only from this many words: an output model scores a lone word
or a code (``gbsct``) at random; a single slur is still found by the lexicon, which every
payload reading goes through as input."""


@dataclass(frozen=True, slots=True)
class ContextView:
    """A decoded reading of one text of ``ctx``: ``encoding`` (``base64``, ``base64>rot13``),
    ``location`` (``messages[1].content``, ``completion``), the derived context and ``part``
    (``text``: framing kept; ``payload``: the decoded spans alone; ``reply``: the decoded spans of
    a request as the window of a ``stream`` context)."""

    encoding: str
    location: str
    ctx: CheckContext
    part: str = "text"


def _readings(view: DecodedView) -> list[str]:
    """The texts a policy judges for one decoded view: the reading itself and, for a ``payload``,
    the same payload presented as quoted data too (what was hidden is data, not the sender's own
    words: ``policies.segments`` judges it as data, the classifier still sees it bare)."""
    if view.part == "payload":
        return [view.text, f'Decoded text:\n"""\n{view.text}\n"""']
    return [view.text]


def context_views(
    ctx: CheckContext, limits: DecodeLimits = DEFAULT_LIMITS, max_views: int = 24
) -> list[ContextView]:
    """The decoded views of ``ctx`` (see the module docstring), at most ``max_views`` in all;
    ``[]`` for a context with nothing encoded. Never raises for well-formed contexts."""
    out: list[ContextView] = []
    if ctx.stage is Stage.PRE_CALL:
        for site, text in iter_message_texts(ctx.messages, roles=_DATA_ROLES, start=ctx.turn_start):
            if site.message_index < 0 or site.json_path is not None or not looks_encoded(text):
                continue
            for view in decoded_views(text, limits):
                for reading in _readings(view):
                    messages = list(ctx.messages)
                    messages[site.message_index] = {**messages[site.message_index], "content": reading}
                    derived = replace(ctx, messages=messages, vault=RedactionVault())
                    out.append(ContextView(view.encoding, site.location, derived, view.part))
                    if len(out) >= max_views:
                        return out
                if view.part == "payload" and len(view.text.split()) >= _REPLY_WORDS:
                    # "decode this" is answered with the decoded text: judge it as that reply too
                    reply = replace(ctx, stage=Stage.STREAM, completion=view.text, vault=RedactionVault())
                    out.append(ContextView(view.encoding, site.location, reply, "reply"))
                    if len(out) >= max_views:
                        return out
    elif ctx.completion and looks_encoded(ctx.completion):
        for view in decoded_views(ctx.completion, limits):
            for reading in _readings(view):
                derived = replace(ctx, completion=reading, vault=RedactionVault())
                out.append(ContextView(view.encoding, "completion", derived, view.part))
                if len(out) >= max_views:
                    return out
    return out
