"""The ``review`` config section: defaults, hashing of reviewer tokens, validation errors."""

from __future__ import annotations

import pytest

from gateway.review.config import Priority, Role, parse_review_settings
from rollguard.errors import ConfigError
from rollguard.settings import hash_api_key


def test_defaults_add_the_system_queues_and_taxonomy() -> None:
    s = parse_review_settings({})
    names = [q.name for q in s.queues]
    assert names == ["triage", "escalation", "adjudication"]
    assert s.queue("adjudication").leads_only
    assert s.k_for("triage") == 1
    assert [label.key for label in s.taxonomy] == [str(i) for i in range(1, 9)]
    assert s.sla[Priority.P1].claim_s < s.sla[Priority.P3].claim_s
    assert s.alpha_threshold == 0.667 and s.posterior_threshold == 0.8


def test_tokens_are_hashed_and_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEA_TOKEN", "secret-lea")
    s = parse_review_settings(
        {
            "reviewers": [
                {"name": "ana", "token": "secret-ana"},
                {"name": "lea", "token": "os.environ/LEA_TOKEN", "role": "lead"},
                {"name": "ops", "token_hash": hash_api_key("secret-ops"), "role": "operator"},
            ]
        }
    )
    assert all(r.token is None for r in s.reviewers)
    assert s.reviewer_by_hash(hash_api_key("secret-lea")).name == "lea"  # type: ignore[union-attr]
    assert s.reviewer("ops").role is Role.OPERATOR  # type: ignore[union-attr]
    assert "secret" not in repr(s)


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"routes": [{"queue": "nope"}]}, "review"),
        ({"queues": [{"name": "a:b"}]}, "review.queues.0.name"),
        ({"reviewers": [{"name": "x", "token": "os.environ/UNSET_TOKEN_VAR_XYZ"}]}, "review.reviewers.0"),
        ({"k_overlap": 0}, "review.k_overlap"),
        (
            {"taxonomy": [{"id": "a", "title": "A", "key": "1"}, {"id": "b", "title": "B", "key": "1"}]},
            "review",
        ),
    ],
)
def test_bad_config_names_the_field(cfg: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_review_settings(cfg)
    assert exc.value.field == field


def test_demo_config_parses_and_logs_in() -> None:
    from gateway.review.demo import DEMO_TOKENS, console_banner, demo_review_config

    s = parse_review_settings(demo_review_config())
    assert s.reviewer_by_hash(hash_api_key(DEMO_TOKENS["lead"])).role is Role.LEAD  # type: ignore[union-attr]
    assert s.k_for("rollout") == 2
    assert "http://127.0.0.1:8080/review" in console_banner("http://127.0.0.1:8080/")
