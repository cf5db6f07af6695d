"""The sink scan: a planted PII set (an e-mail address, a phone number, a payment card number, an
SSN-like id and an API-key-like secret, unique per field) is sent through every field a client
controls (system, user, assistant and tool messages, tool-call arguments, ``name``, ``user``,
``model``, ``metadata``, the rollguard headers, a streamed request, a refused request, review
notes and corrected replies), then every place the gateway writes to is read back and searched
for the raw values: the logs, the spans (OTel ``InMemorySpanExporter``), the metrics (OTel
``InMemoryMetricReader``), every Redis key name and value (strings, hashes, lists, sets, sorted
sets, streams), every file under ``store.data_dir`` (spill/spool) and the review exports (dpo,
kto, jsonl). Must hold: 0 raw planted values anywhere.

Each sink is its own test, so a new leak fails the sink it reaches, naming the field it came from.
The one known leak (the client's ``model`` in span names, span attributes and status, and in the
``model`` metric label: issue 10, fixed with the later wave that maps it to a configured alias or
``unknown``) is split into its own strict xfail tests; the sink tests leave out only that field in
only those two sinks.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from gateway.app import create_app
from gateway.review.export import export_preferences
from policies.builtin.pii_entities import luhn_ok
from rollguard.settings import RollguardSettings
from tests.chaos.conftest import APP_KEYS, METRICS, SPANS, Stub
from tests.integration.conftest import base_config
from tests.review.appkit import TOKENS, review_config
from tests.servers import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Planted:
    """Hands out a unique PII set per field and remembers which field got which values."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}
        self._n = itertools.count(11)

    def values(self, name: str) -> dict[str, str]:
        n = next(self._n)
        body = f"4{n:014d}"
        card = body + next(d for d in "0123456789" if luhn_ok(body + d))
        key = "sk_live_" + hashlib.sha256(name.encode()).hexdigest()[:24]
        out = {
            "email": f"leak{n:03d}.{name.replace('.', '-')}@example.com",
            "phone": f"+1 415-555-{n:04d}",
            "card": " ".join(card[i : i + 4] for i in range(0, 16, 4)),
            "ssn": f"{100 + n:03d}-{10 + n % 89:02d}-{1000 + n:04d}",
            "key": key,
        }
        self.fields[name] = [*out.values(), card, f"555-{n:04d}", key[8:]]
        return out

    def __call__(self, name: str) -> str:
        v = self.values(name)
        return f"mail {v['email']}, call {v['phone']}, card {v['card']}, ssn {v['ssn']}, key {v['key']}"

    def leaks(self, blob: str, skip: frozenset[str] = frozenset()) -> dict[str, list[str]]:
        """Field -> the raw values of it found in ``blob`` (case-insensitive)."""
        low = blob.lower()
        found = {f: [v for v in vals if v.lower() in low] for f, vals in self.fields.items() if f not in skip}
        return {f: v for f, v in found.items() if v}


@dataclass
class Sinks:
    planted: Planted
    texts: dict[str, str] = field(default_factory=dict)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


def _headers(tenant: str, p: Planted | None = None, name: str = "") -> dict[str, str]:
    h = {"Authorization": f"Bearer {APP_KEYS[tenant]}"}
    if p is not None:
        h["x-rollguard-user"] = p.values(f"{name}.header.user")["email"]
        h["x-rollguard-session"] = p.values(f"{name}.header.session")["key"]
        h["x-custom-note"] = p.values(f"{name}.header.custom")["email"]
    return h


def planted_request(p: Planted, stream: bool) -> dict[str, Any]:
    tag = "stream" if stream else "plain"
    args = {"to": p.values(f"{tag}.args.to")["email"], "note": p(f"{tag}.args.note")}
    return {
        "model": "echo",
        "stream": stream,
        "user": p.values(f"{tag}.user")["email"],
        "metadata": {"customer": p(f"{tag}.metadata")[:500]},
        "messages": [
            {
                "role": "system",
                "content": p(f"{tag}.system"),
                "name": p.values(f"{tag}.system.name")["email"],
            },
            {
                "role": "user",
                "name": p.values(f"{tag}.user.name")["email"],
                "content": p(f"{tag}.user.first"),
            },
            {
                "role": "assistant",
                "content": p(f"{tag}.assistant"),
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "send", "arguments": json.dumps(args)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": p(f"{tag}.tool")},
            {"role": "user", "content": [{"type": "text", "text": p(f"{tag}.user.last")}]},
        ],
    }


def _dump_redis(url: str) -> str:
    client = redis.Redis.from_url(url)
    out: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            out.append(f"KEY {key!r} {kind}")
            if kind == "string":
                out.append(repr(client.get(key)))
            elif kind == "hash":
                out.append(repr(client.hgetall(key)))
            elif kind == "list":
                out.append(repr(client.lrange(key, 0, -1)))
            elif kind == "set":
                out.append(repr(client.smembers(key)))
            elif kind == "zset":
                out.append(repr(client.zrange(key, 0, -1, withscores=True)))
            elif kind == "stream":
                out.append(repr(client.xrange(key)))
    finally:
        client.close()
    # bytes reprs escape non-ASCII; the planted values are ASCII, and JSON inside is kept verbatim.
    return "\n".join(out).replace("\\\\", "\\")


def _files(root: Path) -> str:
    return "\n".join(
        f"FILE {f}\n" + f.read_bytes().decode("utf-8", "replace")
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.stat().st_size < 50_000_000
    )


def _wait_items(c: httpx.Client, queue: str, n: int) -> list[dict[str, Any]]:
    lea = {"Authorization": f"Bearer {TOKENS['lea']}"}
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = c.get(f"/v1/review/queues/{queue}/items", headers=lea).json()
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"only {len(rows)} item(s) reached the {queue} queue")


def _traffic(c: httpx.Client, p: Planted) -> None:
    for stream in (False, True):
        r = c.post("/v1/chat/completions", json=planted_request(p, stream), headers=_headers("acme", p, "h"))
        assert r.status_code == 200, r.text
    unknown = {"model": p.values("model")["email"], "messages": [{"role": "user", "content": "hi"}]}
    assert c.post("/v1/chat/completions", json=unknown, headers=_headers("globex")).status_code == 404
    refused = {"model": "echo", "messages": [{"role": p("refused.role"), "content": p("refused.content")}]}
    assert c.post("/v1/chat/completions", json=refused, headers=_headers("globex")).status_code == 400
    guard = {"messages": [{"role": "user", "content": p("guard.user")}], "completion": p("guard.completion")}
    assert c.post("/v1/guard/check", json=guard, headers=_headers("acme")).status_code == 200
    rows = _wait_items(c, "safety", 1)
    ana = {"Authorization": f"Bearer {TOKENS['ana']}"}
    for _ in rows:
        leases = c.post("/v1/review/queues/safety/claim", headers=ana, json={"count": 1}).json()
        if not leases:
            break
        body = {
            "item_id": leases[0]["item_id"],
            "label": "acceptable",
            "note": p("review.note"),
            "corrected": p("review.corrected"),
        }
        r = c.post(f"/v1/review/leases/{leases[0]['lease']}/verdict", headers=ana, json=body)
        assert r.status_code == 200, r.text


async def _exports(redis_url: str, out: Path) -> str:
    client = aioredis.Redis.from_url(redis_url)
    texts = []
    try:
        for fmt in ("dpo", "kto", "jsonl"):
            path = out / f"export.{fmt}.jsonl"
            await export_preferences(client, fmt, path)  # type: ignore[arg-type]
            texts.append(path.read_text())
    finally:
        await client.aclose()
    return "\n".join(texts)


@pytest.fixture(scope="module")
def sinks(stub: Stub, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sinks]:
    """Run the planted traffic once through a fresh gateway and collect every sink's text."""
    data_dir = tmp_path_factory.mktemp("sink-scan-data")
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    stub.reset()
    cfg = base_config(
        stub,
        redis_server_url,
        gateway={"api_keys": [{"key": k, "tenant": t} for t, k in APP_KEYS.items()]},
        review=review_config(),
        policies=[
            # pii flags (the raw text reaches the upstream and the echo reply: the hardest case for
            # the sinks) so the interactions are escalated to the safety queue for review notes.
            {"id": "pii", "type": "pii", "params": {"action": "flag"}},
            {"id": "secrets", "type": "secrets"},
            {"id": "prompt_injection", "type": "prompt_injection"},
        ],
    )
    cfg["store"]["data_dir"] = str(data_dir)
    capture = _Capture()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # the level operators run at
    root.addHandler(capture)
    SPANS.clear()
    p = Planted()
    try:
        with (
            serve_app(create_app(RollguardSettings(**cfg))) as srv,
            httpx.Client(base_url=srv.url, timeout=20) as c,
        ):
            _traffic(c, p)
            time.sleep(0.5)  # the audit trail writes after the response
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    spans = [
        json.dumps(
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
                "status": s.status.description,
            },
            default=str,
        )
        for s in SPANS.get_finished_spans()
    ]
    metrics = METRICS.get_metrics_data()
    yield Sinks(
        p,
        {
            "logs": "\n".join(capture.lines),
            "spans": "\n".join(spans),
            "metrics": metrics.to_json() if metrics is not None else "",
            "redis": _dump_redis(redis_server_url),
            "files": _files(data_dir),
            "exports": asyncio.run(_exports(redis_server_url, data_dir / "exports")),
            "upstream (control: pii only flags, so the raw values are sent)": json.dumps(stub.requests()),
        },
    )


KNOWN_MODEL_LEAK = frozenset({"model"})
"""The planted field of the known leak (see the module docstring)."""


@pytest.mark.parametrize("sink", ["logs", "spans", "metrics", "redis", "files", "exports"])
def test_no_planted_value_reaches_the_sink(sinks: Sinks, sink: str) -> None:
    skip = KNOWN_MODEL_LEAK if sink in ("spans", "metrics") else frozenset()
    assert sinks.planted.leaks(sinks.texts[sink], skip) == {}


def test_the_scan_sees_the_traffic(sinks: Sinks) -> None:
    """The sinks are not empty: the scan reads what the traffic wrote (a scan of nothing would pass)."""
    t = sinks.texts
    assert "chat" in t["spans"] and "rollguard" in t["metrics"]
    assert "rollguard:interactions" in t["redis"] and "rollguard:review:" in t["redis"]
    assert "<EMAIL_ADDRESS_" in t["redis"]  # the records are there, masked
    assert "acceptable" in t["exports"]
    assert "rollguard gateway ready" in t["logs"]
    # The scan finds the planted values where they are meant to be: the upstream got them raw.
    control = sinks.planted.leaks(next(v for k, v in t.items() if k.startswith("upstream")))
    assert {"plain.user.first", "stream.tool", "plain.args.note"} <= set(control)
    assert all(len(v) >= 5 for k, v in control.items() if k.endswith(".user.first"))
    assert len(sinks.planted.fields) >= 30


@pytest.mark.xfail(
    strict=True, reason="issue 10 later wave: the client's model goes raw into span names/attributes"
)
def test_the_model_name_reaches_no_span(sinks: Sinks) -> None:
    assert "model" not in sinks.planted.leaks(sinks.texts["spans"])


@pytest.mark.xfail(strict=True, reason="issue 10 later wave: the client's model is a raw metric label value")
def test_the_model_name_reaches_no_metric_label(sinks: Sinks) -> None:
    assert "model" not in sinks.planted.leaks(sinks.texts["metrics"])
