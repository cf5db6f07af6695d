"""The audit record's sweep and the upstream error masking, in isolation (no servers needed)."""

from __future__ import annotations

import json

from gateway.upstream.errors import map_http_error, redact_message
from policies.base import RedactionVault
from policies.privacy import PrivacyRedactor
from rollguard.types import Decision, Evidence, Interaction, Stage, Verdict

EMAIL = "jane.roe@example.com"
CARD = "4111 1111 1111 1111"


def test_sweep_masks_strings_keys_and_integers_and_keeps_clean_values() -> None:
    r = PrivacyRedactor()
    vault = RedactionVault()
    out = r.sweep({"a": [EMAIL, 4111111111111111, 7, True, None, 1.5], EMAIL: "stop"}, vault)
    assert out == {
        "a": ["<EMAIL_ADDRESS_1>", "<CREDIT_CARD_1>", 7, True, None, 1.5],
        "<EMAIL_ADDRESS_1>": "stop",
    }


def test_clean_cache_never_short_circuits_a_value_with_a_finding() -> None:
    r = PrivacyRedactor()
    for _ in range(3):
        assert r.redact_text(EMAIL, RedactionVault()) == "<EMAIL_ADDRESS_1>"
        assert r.redact_text("stop", RedactionVault()) == "stop"
    assert EMAIL not in r._clean and "stop" in r._clean


def test_record_masks_name_model_finish_reason_metadata_and_evidence_detail() -> None:
    r = PrivacyRedactor()
    it = Interaction(
        id="rg-1234567890123456",
        created_ms=1,
        tenant="t",
        model=f"model {EMAIL}",
        messages=[{"role": "user", "name": EMAIL, "content": f"card {CARD}", "tool_call_id": CARD}],
        completion=f"to {EMAIL}",
        tool_calls=[
            {
                "id": EMAIL,
                "type": "function",
                "function": {"name": EMAIL, "arguments": json.dumps({EMAIL: 1})},
            }
        ],
        finish_reason=EMAIL,
        metadata={"upstream_error": f"too long for {EMAIL}"},
        decisions=[
            Decision(
                "pii",
                "pii",
                Stage.POST_CALL,
                Verdict.REDACT,
                1.0,
                f"odd reason {EMAIL}",
                (Evidence("EMAIL_ADDRESS", "completion_tool_calls[0]", 0, 5, f"json $['{EMAIL}']"),),
            )
        ],
    )
    rec = r.redact_record(it)
    blob = json.dumps(rec)
    assert "jane.roe" not in blob and "4111" not in blob
    assert rec["id"] == "rg-1234567890123456" and rec["tenant"] == "t"
    assert rec["messages"][0]["role"] == "user"
    assert json.loads(rec["tool_calls"][0]["function"]["arguments"]) == {"<EMAIL_ADDRESS_1>": 1}


def test_upstream_message_is_masked_before_the_client_sees_it() -> None:
    raw = json.dumps({"error": {"message": f"context too long for user {EMAIL}"}}).encode()
    err = map_http_error(400, raw)
    assert err.message == "context too long for user <EMAIL_ADDRESS_1>"
    assert redact_message("plain text") == "plain text"


def test_an_entity_across_the_500_character_cut_is_masked_not_half_leaked() -> None:
    raw = json.dumps({"error": {"message": "x" * 490 + " " + EMAIL}}).encode()
    msg = map_http_error(400, raw).message
    assert len(msg) <= 500 and "jane" not in msg


def test_an_upstream_400_keeps_its_param_and_code_masked() -> None:
    raw = json.dumps(
        {"error": {"message": "too long", "param": "messages[0].content", "code": "context_length_exceeded"}}
    ).encode()
    err = map_http_error(400, raw)
    assert (err.status, err.param, err.code) == (400, "messages[0].content", "context_length_exceeded")
    assert err.to_body()["error"]["param"] == "messages[0].content"
    masked = map_http_error(422, json.dumps({"error": {"message": "x", "param": f"user {EMAIL}"}}).encode())
    assert masked.param == "user <EMAIL_ADDRESS_1>" and masked.code == "upstream_rejected_request"
    for error in ({"message": "x", "code": 400, "param": None}, {"message": "x", "param": ""}, "plain"):
        err = map_http_error(400, json.dumps({"error": error}).encode())
        assert (err.param, err.code) == (None, "upstream_rejected_request")
    assert map_http_error(400, b"not json").param is None
