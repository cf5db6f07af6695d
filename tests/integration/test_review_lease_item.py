"""The fresh-user trial of the review queues, end to end through the real gateway app (uvicorn,
the stub upstream, the real Redis): two tenants' PII flags are escalated, a reviewer granted one
tenant cannot decide the other tenant's item with her lease (nor any item but the leased one), the
leased item is never lost, reviewer free text is stored redacted, and client mistakes get clear
4xx errors (a body that is not JSON, an unknown item)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rollguard.settings import hash_api_key
from tests.integration.conftest import GatewayFactory
from tests.review.appkit import TOKENS, review_config

pytestmark = pytest.mark.integration

KEYS = {"acme": "sk-acme-review", "beta": "sk-beta-review"}
EMAIL = "jane.roe@example.com"
CARD = "4111 1111 1111 1111"


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@pytest.fixture()
def trial(gateway: GatewayFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """The trial's setup: keys for acme and beta, ``pii`` flagging, ``lease_s: 3``, ana granted
    acme only; one flagged request per tenant. Yields a client and tenant -> item id."""
    keys = [{"key_hash": hash_api_key(k), "tenant": t} for t, k in KEYS.items()]
    policies = [{"id": "pii", "type": "pii", "params": {"action": "flag"}}]
    review = review_config(lease_s=3)
    with (
        gateway(gateway={"api_keys": keys}, policies=policies, review=review) as url,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        for key in KEYS.values():
            r = c.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "echo", "messages": [{"role": "user", "content": f"I am {EMAIL}"}]},
            )
            assert r.status_code == 200, r.text
        yield c, _wait_for_items(c)


def _wait_for_items(c: httpx.Client) -> dict[str, str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = c.get("/v1/review/queues/safety/items", headers=_h("lea")).json()
        if len(rows) == 2:
            return {row["tenant"]: row["id"] for row in rows}
        time.sleep(0.05)
    raise AssertionError("the flagged interactions were not escalated to the safety queue")


def _item(c: httpx.Client, iid: str) -> dict[str, Any]:
    r = c.get(f"/v1/review/queues/safety/items/{iid}", headers=_h("lea"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_lease_decides_only_its_own_item(trial: tuple[httpx.Client, dict[str, str]]) -> None:
    c, items = trial
    (lease,) = c.post("/v1/review/queues/safety/claim", headers=_h("ana"), json={"count": 5}).json()
    assert lease["item_id"] == items["acme"]
    url = f"/v1/review/leases/{lease['lease']}"

    r = c.post(f"{url}/verdict", headers=_h("ana"), json={"item_id": items["beta"], "label": "acceptable"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
    r = c.post(f"{url}/verdict", headers=_h("ana"), json={"item_id": "0" * 24, "label": "acceptable"})
    assert r.status_code == 404, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("not_found", "item_id")
    beta = _item(c, items["beta"])
    assert (beta["status"], beta["verdicts"]) == ("open", {})
    stats = next(q for q in c.get("/v1/review/queues", headers=_h("lea")).json() if q["queue"] == "safety")
    assert (stats["open"], stats["claimed"], stats["waiting_slots"]) == (2, 1, 1)

    # lea (every tenant) leases the beta item; neither lease works with the other's item id.
    (lea_lease,) = c.post("/v1/review/queues/safety/claim", headers=_h("lea")).json()
    assert lea_lease["item_id"] == items["beta"]
    lea_url = f"/v1/review/leases/{lea_lease['lease']}"
    r = c.post(
        f"{lea_url}/verdict", headers=_h("lea"), json={"item_id": items["acme"], "label": "acceptable"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_item_mismatch", r.text
    assert r.json()["error"]["param"] == "item_id"
    r = c.post(f"{lea_url}/release", headers=_h("lea"), json={"item_id": items["acme"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_item_mismatch", r.text
    assert _item(c, items["acme"])["status"] == "open"
    assert c.post(f"{lea_url}/release", headers=_h("lea"), json={"item_id": items["beta"]}).status_code == 204

    # ana's lease still decides the acme item, and her free text is stored redacted.
    body = {"item_id": items["acme"], "label": "hedging", "note": f"{EMAIL} card {CARD}", "corrected": EMAIL}
    r = c.post(f"{url}/verdict", headers=_h("ana"), json=body)
    assert r.status_code == 200 and r.json()["decided"], r.text
    acme = _item(c, items["acme"])
    assert acme["status"] == "decided"
    assert acme["verdicts"]["ana"]["note"] == "<EMAIL_ADDRESS_1> card <CREDIT_CARD_1>"
    assert acme["verdicts"]["ana"]["corrected"] == "<EMAIL_ADDRESS_1>"
    # The beta item is still there for a reviewer granted beta.
    (again,) = c.post("/v1/review/queues/safety/claim", headers=_h("lea")).json()
    assert again["item_id"] == items["beta"]


def test_a_claim_body_that_is_not_json_says_so(trial: tuple[httpx.Client, dict[str, str]]) -> None:
    c, _items = trial
    r = c.post(
        "/v1/review/queues/safety/claim",
        headers={**_h("ana"), "Content-Type": "application/json"},
        content=b'{"count":',
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_value" and err["param"] is None
    assert err["message"].startswith("the request body is not valid JSON") and "character 9" in err["message"]
