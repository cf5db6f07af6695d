"""The queue page's rows (``gateway.review.queue_view``): snippets redacted with the gateway's own
redaction (even raw content), cut; anomaly snippets; state filters; sorts by age and severity."""

from __future__ import annotations

from typing import Any

from gateway.review.config import Priority
from gateway.review.items import ReviewItem
from gateway.review.privacy import ReviewerTextRedactor
from gateway.review.queue_view import SNIPPET_CHARS, Sort, State, detector_choices, queue_rows, snippet

REDACT = ReviewerTextRedactor(raw_tenants=["acme"]).redact_always  # acme opted in: still redacted
NOW = 1_000_000


def _item(
    iid: str,
    created_ms: int,
    *,
    priority: Priority = Priority.P2,
    payload: dict[str, Any] | None = None,
    detectors: list[str] | None = None,
    leases: dict[str, str] | None = None,
    decide_by_ms: int = NOW + 1,
) -> ReviewItem:
    return ReviewItem(
        id=iid,
        queue="safety",
        status="open",
        tenant="acme",
        source="interaction",
        source_id=iid,
        priority=priority,
        k=1,
        created_ms=created_ms,
        claim_by_ms=NOW + 1,
        decide_by_ms=decide_by_ms,
        payload=payload or {"kind": "interaction", "messages": [{"role": "user", "content": iid}]},
        detectors=detectors or ["pii"],
        variant=None,
        model=None,
        leases=leases or {},
    )


def test_snippet_redacts_raw_pii_and_is_cut() -> None:
    raw = "Please mail jane.roe@example.com the card 4111 1111 1111 1111 " + "x " * 200
    p = {
        "kind": "interaction",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": raw}],
    }
    s = snippet(p, REDACT)
    assert "jane.roe@example.com" not in s and "4111" not in s
    assert s.startswith("Please mail <EMAIL_ADDRESS_1> the card <CREDIT_CARD_1>")
    assert SNIPPET_CHARS - 2 <= len(s) <= SNIPPET_CHARS and s.endswith("…")
    parts = {
        "kind": "interaction",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert snippet(parts, REDACT) == "hi"
    assert (
        snippet({"kind": "interaction", "messages": [], "completion": "only a reply"}, REDACT)
        == "only a reply"
    )


def test_anomaly_snippet_names_metric_threshold_and_canary_prompt() -> None:
    p = {
        "kind": "anomaly",
        "anomaly": {
            "detector": "rollout_judge",
            "metric": "sycophancy_rate",
            "value": 5.38,
            "threshold": 4.94,
        },
        "comparison": {"canary": {"messages": [{"role": "user", "content": "mail bob@example.org"}]}},
    }
    assert (
        snippet(p, REDACT) == "sycophancy_rate 5.38 vs threshold 4.94 · canary prompt: mail <EMAIL_ADDRESS_1>"
    )
    assert snippet({"kind": "anomaly", "anomaly": {"detector": "psi_drift"}}, REDACT) == "psi_drift"


def test_filters_and_sorts() -> None:
    anomaly = {"kind": "anomaly", "anomaly": {"detector": "psi", "severity": "critical"}}
    items = [
        _item("a", 100, detectors=["pii"]),
        _item("b", 200, detectors=["prompt_injection"], leases={"1-0": "ana"}),
        _item("c", 300, priority=Priority.P1, detectors=["pii"], decide_by_ms=NOW - 1),
        _item("d", 400, priority=Priority.P1, payload=anomaly, detectors=["psi"], leases={"2-0": "ben"}),
    ]

    def ids(**kw: Any) -> list[str]:
        return [r.item.id for r in queue_rows(items, viewer="ana", now_ms=NOW, redact=REDACT, **kw)]

    assert ids() == ["a", "b", "c", "d"]
    assert ids(sort=Sort.NEWEST) == ["d", "c", "b", "a"]
    assert ids(sort=Sort.SEVERITY) == ["d", "c", "a", "b"]  # P1 critical, P1, then P2 oldest first
    assert ids(detector="pii") == ["a", "c"]
    assert ids(state=State.UNCLAIMED) == ["a", "c"]
    assert ids(state=State.CLAIMED) == ["b", "d"]
    assert ids(state=State.MINE) == ["b"]
    assert ids(state=State.LATE) == ["c"]
    assert ids(detector="nope") == []
    rows = queue_rows(items, viewer="ana", now_ms=NOW, redact=REDACT)
    assert [r.age_ms for r in rows] == [NOW - 100, NOW - 200, NOW - 300, NOW - 400]
    assert [r.mine for r in rows] == [False, True, False, False]
    assert rows[3].severity == "critical" and rows[0].severity is None
    assert detector_choices(items) == ["pii", "prompt_injection", "psi"]
