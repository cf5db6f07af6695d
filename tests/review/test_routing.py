"""Routing rules: flagged interactions and anomaly bundles -> queues, priorities, SLA times."""

from __future__ import annotations

from gateway.review.config import Priority, parse_review_settings
from gateway.review.routing import route_anomaly, route_interaction

from .appkit import flagged_record, review_config

NOW = 1_800_000_000_000


def test_interaction_goes_to_every_matching_queue_at_its_most_urgent_priority() -> None:
    s = parse_review_settings(review_config())
    routed = route_interaction(s, flagged_record("i1"), NOW)
    assert [(r.queue, r.item.priority) for r in routed] == [("safety", Priority.P1)]
    item = routed[0].item
    assert item.source_key == "interaction:i1"
    assert item.claim_by_ms == NOW + s.sla[Priority.P1].claim_s * 1000
    assert item.decide_by_ms == NOW + s.sla[Priority.P1].decide_s * 1000
    assert item.detectors == ("hedging", "pii")
    assert item.payload["messages"][1]["content"].startswith("My email is <EMAIL_ADDRESS_1>")
    assert [d["policy"] for d in item.payload["decisions"]] == ["pii"]


def test_rule_fields_all_must_match() -> None:
    s = parse_review_settings(
        review_config(
            routes=[
                {"queue": "rollout", "priority": "P1", "variant": ["canary"], "tenant": ["acme"]},
                {"queue": "safety", "priority": "P3", "tenant": ["globex"]},
            ]
        )
    )
    assert [r.queue for r in route_interaction(s, flagged_record("a", variant="canary"), NOW)] == ["rollout"]
    assert [r.queue for r in route_interaction(s, flagged_record("b", variant="control"), NOW)] == ["triage"]
    g = route_interaction(s, flagged_record("c", tenant="globex"), NOW)
    assert [(r.queue, r.item.priority) for r in g] == [("safety", Priority.P3)]


def test_anomaly_without_rule_uses_default_queue_and_severity() -> None:
    s = parse_review_settings({})
    bundle = {
        "detector": "psi",
        "severity": "low",
        "tenant": "acme",
        "window_start_ms": 1,
        "window_end_ms": 2,
    }
    routed = route_anomaly(s, bundle, NOW)
    assert [(r.queue, r.item.priority) for r in routed] == [("triage", Priority.P3)]
    assert routed[0].item.source_id == "psi|None|1|2|None|acme"
    high = route_anomaly(s, dict(bundle, id="a-1", severity="HIGH"), NOW)
    assert high[0].item.priority is Priority.P1 and high[0].item.source_id == "a-1"
    assert high[0].item.payload["anomaly"]["detector"] == "psi"


def test_detector_and_severity_rules_match_anomalies() -> None:
    s = parse_review_settings(
        review_config(
            routes=[{"queue": "rollout", "priority": "P2", "detector": ["psi"], "severity": ["high"]}]
        )
    )
    assert route_anomaly(s, {"id": "x", "detector": "psi", "severity": "high"}, NOW)[0].queue == "rollout"
    assert route_anomaly(s, {"id": "y", "detector": "psi", "severity": "low"}, NOW)[0].queue == "triage"
