"""Trial defects through a real gateway (default policies, model ``echo``): a 390 KB CSV of numbers
goes through as input and as output untouched (before: HTTP 503 on input, an empty
``content_filter`` reply on output), and a hex dump reaches the model unaltered (before: a
``<PHONE_NUMBER_1>`` in it)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import GatewayFactory, Stub
from tests.integration.test_gateway_mustholds import chat
from tests.policies.test_pii_numeric import PNG_HEADER_DUMPS, numeric_csv

pytestmark = pytest.mark.integration

# The default policy set without prompt_injection: its model scores these bodies as injections
# (0.86 for the CSV, 0.97 for a hex dump: a separate defect, reported, not this module's subject).
POLICIES = [
    {"id": t, "type": t}
    for t in ("limits", "invisible_text", "pii", "secrets", "system_prompt_leak", "content_safety")
]


def test_a_390_kb_csv_passes_as_input_and_as_output(gateway: GatewayFactory, stub: Stub) -> None:
    text = numeric_csv()
    with gateway(policies=POLICIES) as url:
        resp = chat(url, {"model": "echo", "messages": [{"role": "user", "content": text}]})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["x-rollguard-verdict"] == "allow"
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"] == text

        stub.script("scripted", {"content": text, "finish_reason": "stop"})
        resp = chat(url, {"model": "scripted", "messages": [{"role": "user", "content": "the table"}]})
        assert resp.status_code == 200, resp.text[:300]
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"] == text


def test_hex_dumps_reach_the_model_unaltered(gateway: GatewayFactory) -> None:
    blob = bytes(range(256)) * 4
    xxd = subprocess.run(["xxd"], input=blob, capture_output=True, check=True).stdout.decode()
    with gateway(policies=POLICIES) as url:
        for dump in [*PNG_HEADER_DUMPS, xxd]:
            text = "What is in this dump?\n" + dump
            resp = chat(url, {"model": "echo", "messages": [{"role": "user", "content": text}]})
            assert resp.status_code == 200, resp.text[:300]
            assert resp.json()["choices"][0]["message"]["content"] == text
            assert "PHONE_NUMBER" not in json.dumps(resp.json())


def test_an_output_guardrail_failure_withholds_the_reply_as_documented(
    gateway: GatewayFactory, stub: Stub
) -> None:
    # README "The block contract": a policy failing on the output (here pii over a 1 ms budget on
    # a 390 KB reply) withholds the reply like an output block, not a 503 (the model has answered;
    # a 503 would make the OpenAI SDKs call it again).
    policies = [{"id": "pii", "type": "pii", "timeout_ms": 1, "stages": ["post_call"]}]
    with gateway(policies=policies) as url:
        stub.script("scripted", {"content": numeric_csv(), "finish_reason": "stop"})
        resp = chat(url, {"model": "scripted", "messages": [{"role": "user", "content": "the table"}]})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["x-rollguard-verdict"] == "block"
        assert resp.headers["x-rollguard-policy"] == "pii"
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == ""
