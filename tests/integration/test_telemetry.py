"""OpenTelemetry: a span per request, per policy and per upstream call, with GenAI semantic
convention attributes and the decision; nothing sensitive in any span."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.trace import StatusCode

from tests.integration.conftest import SPANS, GatewayFactory

pytestmark = pytest.mark.integration

SECRET_TEXT = "reach me at carol.secret@example.com"


def test_spans_for_request_policies_and_upstream(gateway: GatewayFactory) -> None:
    with gateway() as url:
        for stream in (False, True):
            r = httpx.post(
                f"{url}/v1/chat/completions",
                timeout=30,
                json={
                    "model": "echo",
                    "stream": stream,
                    "user": "u-1",
                    "messages": [{"role": "user", "content": SECRET_TEXT}],
                },
            )
            assert r.status_code == 200
    spans = SPANS.get_finished_spans()
    requests = [
        s for s in spans if s.name == "chat echo" and "rollguard.interaction.id" in (s.attributes or {})
    ]
    assert len(requests) == 2
    for s in requests:
        assert s.attributes["gen_ai.request.model"] == "echo"
        assert s.attributes["gen_ai.operation.name"] == "chat"
        assert s.attributes["rollguard.verdict"] == "redact"
        assert s.attributes["gen_ai.usage.input_tokens"] > 0
    upstream = [s for s in spans if s.name.startswith("chat ") and "server.address" in (s.attributes or {})]
    assert len(upstream) >= 2
    assert all(s.attributes["gen_ai.request.model"] for s in upstream)
    policy_spans = {s.name for s in spans if s.name.startswith("policy ")}
    assert {"policy pii", "policy prompt_injection", "policy secrets"} <= policy_spans
    for s in spans:
        blob = repr(dict(s.attributes or {})) + repr([e.attributes for e in s.events])
        assert "carol.secret" not in blob and "u-1" not in blob


def test_a_client_model_name_reaches_no_span_name_attribute_status_or_metric_label(
    gateway: GatewayFactory,
) -> None:
    """Issue 10: the client's ``model`` went raw into the span name, ``gen_ai.request.model``, the
    span status text and the ``model`` metric label (a card number as the model name reached
    traces and metrics; any client could create unlimited metric series). Only a configured
    alias is carried; anything else is ``unknown``."""
    from tests.integration.conftest import METRICS

    planted = "4111 1111 1111 1111 carol.model@example.com"
    SPANS.clear()
    with gateway() as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=30,
            json={"model": planted, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 404
        ok = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=30,
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert ok.status_code == 200
    spans = [s for s in SPANS.get_finished_spans() if "rollguard.interaction.id" in (s.attributes or {})]
    names = sorted(s.name for s in spans)
    assert names == ["chat echo", "chat unknown"]
    refused = next(s for s in spans if s.name == "chat unknown")
    assert refused.attributes["gen_ai.request.model"] == "unknown"
    # a client error: the exception event names the class and code; the server span's status
    # stays unset (HTTP semantic conventions: 4xx is not a server error)
    assert [e.attributes["exception.message"] for e in refused.events] == ["NotFound (model_not_found)"]
    assert refused.status.status_code is StatusCode.UNSET
    for s in spans:
        blob = s.name + repr(dict(s.attributes or {})) + repr([e.attributes for e in s.events])
        blob += str(s.status.description)
        assert "4111 1111" not in blob and "carol.model" not in blob
    data = METRICS.get_metrics_data()
    assert data is not None
    labels = data.to_json()
    assert "4111 1111" not in labels and "carol.model" not in labels
    assert '"model": "unknown"' in labels and '"model": "echo"' in labels
