"""Evidence spans and PII placeholders become marked segments; canary/control pairing."""

from __future__ import annotations

from gateway.review.highlight import Mark, highlight_conversation, nearest_pair, segments, similarity

from .appkit import flagged_record


def test_segments_split_at_every_boundary_and_keep_overlaps() -> None:
    text = "abcdefghij"
    segs = segments(text, [Mark(2, 6, "a", "policy"), Mark(4, 8, "b", "detector"), Mark(9, 50, "c", "x")])
    assert "".join(s.text for s in segs) == text
    assert [(s.text, s.labels) for s in segs] == [
        ("ab", ()),
        ("cd", ("a",)),
        ("ef", ("a", "b")),
        ("gh", ("b",)),
        ("i", ()),
        ("j", ("c",)),
    ]


def test_conversation_marks_policy_detector_and_placeholder() -> None:
    conv = highlight_conversation(flagged_record("i1"))
    user = conv["messages"][1]["segments"]
    marked = [s for s in user if s.marked]
    assert [s.text for s in marked] == ["<EMAIL_ADDRESS_1>"]
    assert set(marked[0].kinds) == {"policy", "placeholder"}
    comp = [s for s in conv["completion"] if s.marked]
    assert [(s.text, s.kinds) for s in comp] == [("might possibly", ("detector",))]


def test_out_of_range_evidence_is_ignored() -> None:
    rec = flagged_record("i1")
    rec["decisions"][0]["evidence"][0].update(start=500, end=600)
    conv = highlight_conversation(rec)
    assert [s.kinds for s in conv["messages"][1]["segments"] if s.marked] == [("placeholder",)]


def test_nearest_pair_prefers_the_same_prompt() -> None:
    def rec(rid: str, prompt: str) -> dict[str, object]:
        return {"id": rid, "messages": [{"role": "user", "content": prompt}]}

    canary = [rec("c1", "how do I bake bread"), rec("c2", "reset my password please")]
    control = [rec("k1", "please reset my password"), rec("k2", "what is the capital of France")]
    pair = nearest_pair(canary, control)
    assert pair is not None and pair["canary"]["id"] == "c2" and pair["control"]["id"] == "k1"
    assert pair["similarity"] == 1.0  # same word set
    assert similarity("a b", "c d") == 0.0
    assert nearest_pair([], control) is None
