"""A bounded, derandomized schemathesis run against the real gateway (uvicorn on a socket, the real
store, the demo upstream, two tenants, the review console): every operation of the OpenAPI document
(chat, guard, models, operator, health and review routes) gets generated valid and invalid
requests, and every answer must be

- not a 5xx (``not_a_server_error``),
- documented: status, content type and body schema (``status_code_conformance``,
  ``content_type_conformance``, ``response_schema_conformance``),
- a 4xx for a request the schema calls invalid (``negative_data_rejection``: the schema is not
  looser than the validator),
- accepted when the schema calls it valid (``valid_bodies_accepted``, chat and guard routes: the
  schema is not looser than the validator; a guardrail block, ``code: content_filter``, is an
  answer, not a rejection).

Three rules JSON Schema cannot state are applied to generated valid bodies before they are sent,
the way a client obeys them (``repair_history``, ``repair_tool_choice``): tool messages answer the
calls of the assistant message before them, a ``tool_choice`` names functions of ``tools``, and
``policies`` names configured policies. A tool call's ``arguments``
(``format: json-object``) is generated as a JSON object serialised to text.

Bounded for CI: ``MAX_EXAMPLES`` per operation, no deadline, a fixed seed (derandomized), well
under two minutes on one core.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CheckContext
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.chat_options import INT_RANGES
from tests.chaos.conftest import ChaosGateway

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # schemathesis' own strategies seed Python's random module; hypothesis warns about it (not ours
    # to fix, and the run is derandomized all the same).
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

MAX_EXAMPLES = int(os.environ.get("ROLLGUARD_CHAOS_EXAMPLES", "40"))
"""Generated cases per operation and generation mode (23 operations); CI uses the default, a
deeper local run sets ``ROLLGUARD_CHAOS_EXAMPLES``."""

SERVED = ("echo", "demo")
"""Model aliases a generated valid body is pointed at (three in four; the others keep their random
model and get the documented 404)."""

JSON_OBJECT_TEXT = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=3
).map(json.dumps)
schemathesis.openapi.format("json-object", JSON_OBJECT_TEXT)

STATUSES: Counter[str] = Counter()
"""``<mode> <METHOD> <path> <status>`` -> count, printed at the end of the module."""


def repair_history(messages: list[Any]) -> list[Any]:
    """``messages`` obeying the tool-call pairing (``gateway.chat_history``): a tool message that
    answers no open call becomes a user message (its content is valid user content); the calls of
    an assistant message get unique ids and are answered, in order, before the next other message."""
    out: list[Any] = []
    open_ids: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            out.append(m)
            continue
        if m.get("role") == "tool":
            if m.get("tool_call_id") in open_ids:
                open_ids.remove(m["tool_call_id"])
                out.append(m)
                continue
            m = {**{k: v for k, v in m.items() if k != "tool_call_id"}, "role": "user"}
        out += [{"role": "tool", "tool_call_id": c, "content": "ok"} for c in open_ids]
        open_ids = []
        if m.get("role") == "assistant" and m.get("tool_calls"):
            for j, call in enumerate(m["tool_calls"]):
                call["id"] = f"call_{i}_{j}"
            open_ids = [c["id"] for c in m["tool_calls"]]
        out.append(m)
    out += [{"role": "tool", "tool_call_id": c, "content": "ok"} for c in open_ids]
    return out


def repair_tool_choice(body: dict[str, Any]) -> None:
    """A generated ``tool_choice`` object names functions of the body's ``tools`` (the schema
    already makes such a choice come with tools)."""
    choice, tools = body.get("tool_choice"), body.get("tools")
    if not isinstance(choice, dict) or not isinstance(tools, list) or not tools:
        return
    names = [t["function"]["name"] for t in tools]
    named = [choice] if choice.get("type") == "function" else choice["allowed_tools"]["tools"]
    for k, fn in enumerate(named):
        fn["function"]["name"] = names[k % len(names)]


def _positive(case: Case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


def repair(case: Case, policies: list[str]) -> None:
    """Apply the rules the schema cannot state to a generated valid request (see the module doc)."""
    if not _positive(case):
        return
    _route_to_queues(case)
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("messages"), list):
        body["messages"] = repair_history(body["messages"])
    repair_tool_choice(body)
    for name, (lo, hi) in INT_RANGES.items():
        v = body.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) >= 2**53:
            # The generator handles an int64 bound in float space (2**63 - 1 rounds to 2**63) and
            # may call a value just past it valid; the validator compares exactly.
            body[name] = max(lo, min(hi, int(v)))
    model = body.get("model")
    if case.path == "/v1/chat/completions" and isinstance(model, str) and len(model) % 4 != 3:
        body["model"] = SERVED[len(model) % 2]
    if case.path == "/v1/guard/check" and isinstance(body.get("policies"), list):
        body["policies"] = [policies[len(str(p)) % len(policies)] for p in body["policies"]]


QUEUES = ("safety", "rollout")
"""Configured review queues (``tests/review/appkit.review_config``)."""


def _route_to_queues(case: Case) -> None:
    """Point three in four generated queue names and lease ids at configured queues, so the review
    handlers past the 404 run too."""
    params = case.path_parameters or {}
    for name in ("queue", "lease"):
        value = params.get(name)
        if isinstance(value, str) and len(value) % 4 != 3:
            queue = QUEUES[len(value) % 2]
            params[name] = queue if name == "queue" else f"{queue}:P{1 + len(value) % 3}:{len(value)}-0"


def valid_bodies_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the schema calls valid is not refused as invalid (chat and guard routes)."""
    guarded = case.path in ("/v1/chat/completions", "/v1/guard/check")
    if guarded and _positive(case) and response.status_code == 400:
        error = json.loads(response.content)["error"]
        assert error["code"] == "content_filter", f"valid request refused: {error}"
    return None


CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    valid_bodies_accepted,
]


OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("POST", "/v1/guard/check"),
    ("GET", "/v1/policies"),
    ("GET", "/v1/flags"),
    ("GET", "/v1/store"),
    ("GET", "/v1/detectors"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/review/me"),
    ("GET", "/v1/review/taxonomy"),
    ("GET", "/v1/review/queues"),
    ("GET", "/v1/review/queues/{queue}/items"),
    ("POST", "/v1/review/queues/{queue}/claim"),
    ("GET", "/v1/review/queues/{queue}/items/{item_id}"),
    ("POST", "/v1/review/leases/{lease}/heartbeat"),
    ("POST", "/v1/review/leases/{lease}/release"),
    ("POST", "/v1/review/leases/{lease}/verdict"),
    ("GET", "/v1/review/queues/{queue}/agreement"),
    ("POST", "/v1/review/queues/{queue}/aggregate"),
    ("GET", "/v1/review/detectors/precision"),
    ("GET", "/v1/review/variants"),
    ("GET", "/v1/review/queues/{queue}/audit"),
    ("GET", "/v1/rollouts"),
    ("POST", "/v1/rollouts"),
    ("GET", "/v1/rollouts/{rollout_id}"),
    ("POST", "/v1/rollouts/{rollout_id}/{action}"),
    ("POST", "/v1/flags/{flag}/{action}"),
]
"""Every operation of the served document (``test_the_run_covers_every_operation`` keeps it so)."""


@pytest.fixture(scope="module")
def api_schema(chaos_gateway: ChaosGateway) -> Iterator[Any]:
    schema = schemathesis.openapi.from_url(f"{chaos_gateway.url}/openapi.json")
    yield schema
    print("\nschemathesis answers:", json.dumps(dict(sorted(STATUSES.items())), indent=1))


@pytest.fixture(scope="module")
def policy_ids(chaos_gateway: ChaosGateway) -> list[str]:
    r = httpx.get(f"{chaos_gateway.url}/v1/policies", headers=chaos_gateway.app_headers())
    return [p["id"] for p in r.json()["data"]]


def test_the_run_covers_every_operation(chaos_gateway: ChaosGateway) -> None:
    doc = httpx.get(f"{chaos_gateway.url}/openapi.json").json()
    served = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented(
    api_schema: Any,
    chaos_gateway: ChaosGateway,
    policy_ids: list[str],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    if path.startswith(("/v1/review", "/v1/rollouts", "/v1/flags/")):  # the review accounts
        headers = chaos_gateway.reviewer_headers("lea")
    else:
        headers = chaos_gateway.app_headers("acme")

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        repair(case, policy_ids)
        response = case.call(base_url=chaos_gateway.url, headers=headers, timeout=30)
        STATUSES[f"{mode} {case.method} {case.path} {response.status_code}"] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("no invalid request exists for this operation (no body, query or typed path value)")
