"""Compliance openers ("Sure, here is ...", "Certainly!", "Of course") made uninformative for the
``content_safety`` output model. Used by ``gateway/tools/train_content_safety.py``.

Why: AdvBench's harmful replies are all the formulaic opener "Sure, here is <goal>", so a reply
model trained on them learned the opener, not the content: "Sure, here is the summary you asked
for." scored 0.595 (output threshold 0.357) and "Sure. " * 80 scored 1.0.

The fix is counterfactual augmentation, applied the same way to both classes so that an opener
says nothing about the label:

- every training reply has its formulaic opener stripped (``strip_opener``); a harmful reply
  trains as its stripped text, so the model must learn the content;
- every training reply (harmful or benign) also trains once with an opener drawn from
  ``TRAIN_OPENERS``, and every benign reply once more as a short copy (opener + its first
  characters, cut at a word), so that short opener-led benign replies exist as AdvBench's short
  opener-led harmful ones do (``opener_copies``).

Copies keep their source row's ``group`` and ``origin`` and are built after the split, so an
augmented copy is always on the side of the reply it comes from. ``HELDOUT_OPENERS`` are never
trained on: the held-out check prefixes held-out benign replies with them (and, separately, with
``TRAIN_OPENERS``).
"""

from __future__ import annotations

import random
import re

from gateway.tools.content_data import Row

__all__ = ["HELDOUT_OPENERS", "TRAIN_OPENERS", "opener_copies", "prefixed", "strip_opener"]

TRAIN_OPENERS = (
    "Sure, here is ",
    "Sure, here's ",
    "Sure! Here is ",
    "Sure, ",
    "Sure. ",
    "Sure! ",
    "Certainly! Here is ",
    "Certainly. ",
    "Certainly, ",
    "Of course! ",
    "Of course, here is ",
    "Here is ",
    "Here's ",
    "Absolutely! Here's ",
    "Okay, here is ",
)
"""Openers the training copies use; weighted towards "Sure, here is", the opener of AdvBench's
harmful replies (each listed once, "Sure"-led ones are 6 of 15)."""

HELDOUT_OPENERS = (
    "Sure thing! ",
    "Yes, here you go: ",
    "Happy to help. Here is ",
    "Definitely! Here's ",
    "No problem, here is ",
    "Alright, here's ",
    "Sure - ",
    "Of course. Here you go: ",
)
"""Openers never trained on: the held-out check's second half."""

_OPENER = re.compile(
    r"^\s*(?:(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright|yes|definitely)\b"
    r"\s*[,.!:-]*\s*)?(?:(?:here\s+(?:is|are)|here's|here you go)\b\s*[,.!:-]*\s*)?",
    re.IGNORECASE,
)
SHORT = 100
"""Characters of a benign reply's short copy (AdvBench's harmful replies: median 79)."""


def strip_opener(text: str) -> str:
    """``text`` without one leading formulaic compliance opener ("Sure, here is", "Certainly!",
    "Of course", "Here's", ...); the text itself when it has none or is only an opener."""
    rest = text[_OPENER.match(text).end() :]  # type: ignore[union-attr]  # the pattern matches ""
    return rest if rest.strip() else text


def prefixed(opener: str, text: str) -> str:
    """``opener`` followed by ``text`` (opener stripped first), its first letter lower-cased after
    an opener that runs on ("Sure, here is a ...") and kept after one that ends a sentence, and
    for "I" and acronyms ("SQL")."""
    body = strip_opener(text).lstrip()
    first = body.split(maxsplit=1)[0] if body.strip() else ""
    keep = opener.rstrip()[-1:] in ".!:" or first == "I" or first.startswith("I'") or first[1:2].isupper()
    if body and not keep:
        body = body[0].lower() + body[1:]
    return opener + body


def _short(text: str) -> str:
    """The first ``SHORT`` characters of ``text``, cut back to a word boundary."""
    if len(text) <= SHORT:
        return text
    cut = text[:SHORT]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def opener_copies(replies: list[Row], seed: int, weight: float = 1.0) -> list[Row]:
    """Counterfactual copies of the evaluated ``replies`` (not evaluated, weight ``weight``, same
    source, group and origin): each reply stripped of its opener when it had one, each reply with
    a random ``TRAIN_OPENERS`` opener, and each benign reply as a short opener-led copy. Seeded,
    so a retrain reproduces the rows."""
    rng = random.Random(seed)
    out: list[Row] = []
    for r in replies:
        if not r.evaluated:
            continue
        body = strip_opener(r.text)
        texts = [prefixed(rng.choice(TRAIN_OPENERS), body)]
        if body != r.text:
            texts.append(body)
        if r.label == 0:
            texts.append(prefixed(rng.choice(TRAIN_OPENERS), _short(body)))
        for t in texts:
            out.append(Row(t, r.label, r.source, r.group, r.category, weight, False, r.origin))
    return out
