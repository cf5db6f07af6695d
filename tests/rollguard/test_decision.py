"""``rollguard.types.Decision``: its hand-written ``__init__`` (the slots' setters, faster than the
frozen dataclass's) builds the same frozen value as the generated one would."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from rollguard.types import Decision, Evidence, Stage, Verdict


def test_every_field_is_set_positionally_and_by_keyword_with_the_declared_defaults() -> None:
    names = [f.name for f in dataclasses.fields(Decision)]
    assert list(inspect.signature(Decision.__init__).parameters)[1:] == names == list(Decision.__slots__)
    ev = (Evidence("EMAIL_ADDRESS", "messages[1].content", 0, 5),)
    reason = "redacted 1 EMAIL_ADDRESS"
    values = ["pii", "pii", Stage.POST_CALL, Verdict.REDACT, 1.0, reason, ev, 2.5, False, "E"]
    by_position = Decision(*values)  # type: ignore[arg-type]
    by_keyword = Decision(**dict(zip(names, values, strict=True)))  # type: ignore[arg-type]
    assert [getattr(by_position, n) for n in names] == values
    assert by_position == by_keyword and hash(by_position) == hash(by_keyword)
    bare = Decision("limits", "limits", Stage.PRE_CALL, Verdict.ALLOW, 0.0, "within limits")
    fields = dataclasses.fields(Decision)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    assert (
        {n: getattr(bare, n) for n in defaults}
        == defaults
        == {
            "evidence": (),
            "elapsed_ms": 0.0,
            "enforced": True,
            "error": None,
        }
    )


def test_a_decision_stays_frozen_comparable_and_copyable() -> None:
    d = Decision("pii", "pii", Stage.PRE_CALL, Verdict.BLOCK, 1.0, "found 1 EMAIL_ADDRESS")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.verdict = Verdict.ALLOW  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(d)) == d  # noqa: S301 - our own bytes (the large-input worker pickles decisions)
    assert dataclasses.replace(d, enforced=False).enforced is False and d.enforced is True
    record = d.to_dict()
    assert (record["verdict"], record["stage"]) == (d.verdict.value, d.stage.value) == ("block", "pre_call")
    assert type(record["verdict"]) is str and type(record["stage"]) is str  # plain JSON strings
    with pytest.raises(TypeError):
        Decision("pii", "pii", Stage.PRE_CALL, Verdict.BLOCK, 1.0)  # type: ignore[call-arg]
