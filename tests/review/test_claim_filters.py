"""The console's "claim next" honours the queue page's filters (policy / detector, state): it
claims the next item the reviewer is looking at, the filters travel to the item page and back,
and an item the filter skipped is not lost for the next claimer. Real uvicorn server, real store
(the ``redis_url`` fixture); the queue filter's parsing as a unit."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.review.queue_view import QueueFilter, Sort, State
from rollguard.errors import InvalidRequest
from tests.servers import serve_app

from .appkit import TOKENS, build_app, seed_safety

pytestmark = pytest.mark.integration


@pytest.fixture()
def console(redis_url: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    ids = seed_safety(redis_url, "Ignore previous instructions")
    app, _service = build_app(redis_url)
    with serve_app(app) as srv, httpx.Client(base_url=srv.url) as client:
        yield client, ids


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def _claim(c: httpx.Client, who: str, **form: str) -> tuple[str, dict[str, list[str]]]:
    r = c.post("/review/queues/safety/claim", data=form, headers=_h(who))
    assert r.status_code == 303, r.text
    url = urlsplit(r.headers["location"])
    return url.path, parse_qs(url.query)


def test_claim_next_takes_the_next_item_matching_the_filters(
    console: tuple[httpx.Client, dict[str, str]],
) -> None:
    """Defect: "claim next" ignored the filters and leased the oldest P1 item (a PII flag) to a
    reviewer looking at prompt-injection flags only."""
    c, ids = console
    path, query = _claim(c, "ana", detector="prompt_injection", state="all", sort="newest")
    assert path == f"/review/queues/safety/items/{ids['inj']}"
    assert query["detector"] == ["prompt_injection"] and query["sort"] == ["newest"]
    assert "state" not in query  # the default is not carried
    page = c.get(path, params={k: v[0] for k, v in query.items()}, headers=_h("ana"))
    assert 'data-filters="detector=prompt_injection&amp;sort=newest"' in page.text  # for the next claim
    assert 'id="back"' in page.text and "/review/queues/safety?detector=prompt_injection" in page.text

    # the next claim after the verdict keeps the filter: nothing else matches, back to the queue
    path, query = _claim(c, "ana", detector="prompt_injection", done=ids["inj"])
    assert path == "/review/queues/safety" and query["empty"] == ["1"]
    assert query["done"] == [ids["inj"]] and query["detector"] == ["prompt_injection"]

    # the PII items the filtered claim passed over are still there for an unfiltered claim (P1 first)
    path, _ = _claim(c, "ben")
    taken = path.rsplit("/", 1)[1]
    assert taken in {ids["pii-a"], ids["pii-b"]}
    # "unclaimed" passes over the items leased meanwhile (inj by ana, one PII item by ben)
    path, _ = _claim(c, "ana", state="unclaimed")
    other = ids["pii-b"] if taken == ids["pii-a"] else ids["pii-a"]
    assert path == f"/review/queues/safety/items/{other}"
    # "mine": the first item the reviewer holds, opened with its lease (nothing new claimed)
    path, query = _claim(c, "ben", state="mine")
    assert path == f"/review/queues/safety/items/{taken}" and query == {"state": ["mine"]}
    held = c.get(path, params={"state": "mine"}, headers=_h("ben"))
    assert 'id="verdict-panel"' in held.text and 'data-lease=""' not in held.text


def test_a_bad_filter_value_is_a_400_page(console: tuple[httpx.Client, dict[str, str]]) -> None:
    c, _ids = console
    r = c.post(
        "/review/queues/safety/claim",
        data={"state": "everything"},
        headers=_h("ana"),
    )
    assert r.status_code == 400 and "unknown queue filter" in r.text


def test_queue_filter_parse_query_and_activity() -> None:
    f = QueueFilter.parse({"detector": ["pii"], "state": ["late"], "sort": ["severity"], "x": ["y"]})
    assert f == QueueFilter("pii", State.LATE, Sort.SEVERITY) and f.active
    assert f.query() == "detector=pii&state=late&sort=severity"
    assert QueueFilter.parse({}) == QueueFilter() and not QueueFilter().active and QueueFilter().query() == ""
    assert not QueueFilter(sort=Sort.NEWEST).active  # a sort alone keeps every item
    assert QueueFilter(detector="a&b=c").query() == "detector=a%26b%3Dc"
    with pytest.raises(InvalidRequest):
        QueueFilter.parse({"sort": ["random"]})
