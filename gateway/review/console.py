"""The reviewer console under ``/review``: server-rendered Jinja2 pages with a little of our own
JavaScript (``static/console.js``: keyboard shortcuts, heartbeat, verdict submission through the
JSON API). Not in the OpenAPI schema; everything it does is also in ``/v1/review``.

Pages: ``/review/login``, ``/review`` (queues), ``/review/queues/{q}`` (queue, claim next),
``/review/queues/{q}/items/{id}`` (item view with highlighted evidence and verdicts; an anomaly's
numbers through ``anomaly_view``),
``/review/insights`` (agreement and detector precision), ``/review/rollouts`` and
``/review/rollouts/{id}`` (staged rollouts: ``rollout_pages``).

Every page but login, logout and the static files authenticates first (``auth.guarded_route``),
before any query value is validated: a GET without a session is redirected to the login page
(303), any other method (the console's form posts) answers 401 with the login page. A queue in the
path is checked against the grants (403 page) before the handler runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.review.anomaly_view import anomaly_facts
from gateway.review.auth import COOKIE, ReviewAuth, current_reviewer, guarded_route
from gateway.review.config import ReviewerSpec, Role
from gateway.review.highlight import highlight_conversation
from gateway.review.queue import Lease, ReviewItem, now_ms
from gateway.review.queue_view import DETECTOR_CHARS, QueueFilter, Sort, State, detector_choices, queue_rows
from gateway.review.rollout_pages import register_filters, rollout_routes
from gateway.review.rollout_view import RolloutViewSlot
from gateway.review.service import ReviewService
from rollguard.errors import AuthenticationFailed, InvalidRequest, RollguardError

HERE = Path(__file__).resolve().parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _age(ms: int) -> str:
    """``1h 02m`` / ``3m 10s`` / ``2d 4h`` from milliseconds."""
    s = max(0, int(ms // 1000))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["age"] = _age
_env.filters["when"] = _when
register_filters(_env)


PUBLIC = frozenset({"/review/login", "/review/logout", "/review/static/{name}"})
"""Console routes served without a session."""


def _lease_for(lease: str, item: ReviewItem) -> bool:
    """True when the ``lease`` id (from the URL) names a slot of ``item``'s queue and priority
    stream; a malformed id is not a lease (the page is shown read-only)."""
    if not lease:
        return False
    try:
        queue, prio, _entry = Lease.parse(lease)
    except InvalidRequest:
        return False
    return queue == item.queue and prio is item.priority


def _render_error(request: Request, exc: RollguardError | RequestValidationError) -> Response:
    """No session: GET -> 303 to the login page, other methods -> 401 with the login page; other
    rollguard errors -> the error page with their status; a bad query value -> a 400 error page."""
    if isinstance(exc, AuthenticationFailed):
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(f"/review/login?next={quote(request.url.path)}", status_code=303)
        back = request.url.path.rsplit("/claim", 1)[0] if request.url.path.endswith("/claim") else "/review"
        html = _env.get_template("login.html").render(
            me=None, now_ms=now_ms(), next=back, error="Your session ended: log in again."
        )
        return HTMLResponse(html, status_code=401)
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        where = ".".join(str(p) for p in (errors[0].get("loc", ()) if errors else ()))
        status, message = 400, f"invalid value for {where or 'the request'}"
    else:
        status, message = exc.status, exc.message
    html = _env.get_template("error.html").render(status=status, message=message, me=None)
    return HTMLResponse(html, status_code=status)


def build_console(
    service: ReviewService, auth: ReviewAuth, rollouts: RolloutViewSlot | None = None
) -> APIRouter:
    """The console routes (prefix ``/review``); the rollout pages read ``rollouts.source``
    (no rollouts without one)."""

    async def guard(request: Request, route: str) -> None:
        if route in PUBLIC:
            return
        service.start()
        me = await auth.reviewer(request)
        request.state.reviewer = me
        queue = request.path_params.get("queue")
        if queue is not None:
            service.check_queue(me, str(queue), decide=route.endswith("/claim"))

    ui = APIRouter(prefix="/review", include_in_schema=False, route_class=guarded_route(guard, _render_error))
    _session_routes(ui, service, auth)
    _queue_routes(ui, service)
    _item_routes(ui, service)
    rollout_routes(ui, service, rollouts or RolloutViewSlot(), _page)
    return ui


def _page(name: str, me: ReviewerSpec | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _env.get_template(name).render(me=me, now_ms=now_ms(), **ctx)
    return HTMLResponse(html, status_code=status)


def _session_routes(ui: APIRouter, service: ReviewService, auth: ReviewAuth) -> None:
    """Static files, login and logout."""

    @ui.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])

    @ui.get("/login")
    async def login_form(next: str = "/review") -> HTMLResponse:
        return _page("login.html", None, next=next if next.startswith("/review") else "/review")

    @ui.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        next = (form.get("next") or ["/review"])[0]
        try:
            _reviewer, sid = await auth.login(token)
        except AuthenticationFailed:
            return _page("login.html", None, status=401, next=next, error="Unknown reviewer token.")
        dest = next if next.startswith("/review") and not next.startswith("//") else "/review"
        resp = RedirectResponse(dest, status_code=303)
        resp.set_cookie(
            COOKIE,
            sid,
            max_age=service.settings.session_ttl_s,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return resp

    @ui.post("/logout")
    async def logout(request: Request) -> Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            await auth.logout(sid)
        resp = RedirectResponse("/review/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp


def _queue_routes(ui: APIRouter, service: ReviewService) -> None:
    """The queue list, one queue's page and claiming its next item."""

    @ui.get("")
    async def home(request: Request) -> HTMLResponse:
        me = current_reviewer(request)
        rows = []
        for name in service.queue_names(me):
            st = await service.queues.stats(name, tenants=service.tenant_scope(me))
            ag = await service.agreement(name)
            spec = service.settings.queue(name)
            rows.append({"stats": st, "spec": spec, "k": service.settings.k_for(name), "agreement": ag})
        return _page("queues.html", me, rows=rows)

    @ui.get("/queues/{queue}")
    async def queue__page(
        request: Request,
        queue: str,
        empty: int = 0,
        done: str = "",
        detector: str = "",
        state: State = State.ALL,
        sort: Sort = Sort.OLDEST,
    ) -> HTMLResponse:
        me = current_reviewer(request)
        ctx = await _queue_context(service, me, queue, QueueFilter(detector[:DETECTOR_CHARS], state, sort))
        return _page("queue.html", me, queue=queue, empty=bool(empty), done=done, **ctx)

    @ui.post("/queues/{queue}/claim")
    async def claim(request: Request, queue: str) -> Response:
        """Claim the next item for the reviewer: among those the queue page's filters (posted
        with the form: ``detector``, ``state``, ``sort``) keep, P1 first; the filters travel on
        to the item page and back, so the claim after a verdict keeps them."""
        me = current_reviewer(request)
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        done = (form.get("done") or [""])[0][:128]
        filters = QueueFilter.parse(form)
        carried = (f"done={quote(done)}" if done else "", filters.query())
        after = "".join("&" + q for q in carried if q)
        base = f"/review/queues/{quote(queue)}"
        only = await _visible_matching(service, me, queue, filters) if filters.active else None
        if filters.state is State.MINE and only:  # held already: open the first, nothing to claim
            return RedirectResponse(f"{base}/items/{only[0]}?{filters.query()}", status_code=303)
        leases = await service.claim(me, queue, count=1, only=only)
        if not leases:
            return RedirectResponse(f"{base}?empty=1{after}", status_code=303)
        le = leases[0]
        return RedirectResponse(f"{base}/items/{le.item_id}?lease={quote(le.id)}{after}", status_code=303)


async def _visible(service: ReviewService, me: ReviewerSpec, queue: str) -> list[ReviewItem]:
    """The open items of ``queue`` that ``me`` may see (the oldest 200 are read)."""
    items = await service.queues.open_items(queue, limit=200)
    return [it for it in items if me.role is Role.OPERATOR or me.can_tenant(it.tenant)]


async def _visible_matching(
    service: ReviewService, me: ReviewerSpec, queue: str, filters: QueueFilter
) -> list[str]:
    """Ids of the items the queue page shows ``me`` under ``filters``, in its order."""
    return filters.matching(await _visible(service, me, queue), me.name, now_ms())


async def _queue_context(
    service: ReviewService, me: ReviewerSpec, queue: str, filters: QueueFilter
) -> dict[str, Any]:
    """The queue page's values: stats, the open items ``me`` may see as filtered and sorted rows
    (``gateway.review.queue_view``; the oldest 200 open items are read), the filter's options."""
    st = await service.queues.stats(queue, tenants=service.tenant_scope(me))
    visible = await _visible(service, me, queue)
    detector, state, sort = filters.detector, filters.state, filters.sort
    rows = queue_rows(
        visible,
        viewer=me.name,
        now_ms=now_ms(),
        redact=service.text_redactor.redact_always,
        detector=detector,
        state=state,
        sort=sort,
    )
    return {
        "queues": service.queue_names(me),
        "stats": st,
        "rows": rows,
        "shown": len(rows),
        "total": len(visible),
        "detectors": detector_choices(visible),
        "filters": {"detector": detector, "state": state.value, "sort": sort.value},
        "filter_query": filters.query(),
        "states": [s.value for s in State],
        "sorts": [s.value for s in Sort],
        "can_decide": me.role is not Role.OPERATOR,
    }


def _item_routes(ui: APIRouter, service: ReviewService) -> None:
    """One item's page and the insights page."""

    @ui.get("/queues/{queue}/items/{item_id}")
    async def item__page(
        request: Request,
        queue: str,
        item_id: str,
        lease: str = "",
        done: str = "",
        detector: str = "",
        state: State = State.ALL,
        sort: Sort = Sort.OLDEST,
    ) -> HTMLResponse:
        me = current_reviewer(request)
        filter_query = QueueFilter(detector[:DETECTOR_CHARS], state, sort).query()
        it = await service.item(me, queue, item_id)
        held = lease if _lease_for(lease, it) and it.leases.get(lease.rsplit(":", 1)[-1]) == me.name else ""
        if not held:
            held_entries = [e for e, who_ in it.leases.items() if who_ == me.name]
            if held_entries:
                held = f"{queue}:{it.priority.value}:{held_entries[0]}"
        p = it.payload
        conv = highlight_conversation(p)
        comparison = p.get("comparison")
        sides = {}
        if comparison:
            for side in ("canary", "control"):
                sides[side] = highlight_conversation(comparison[side])
        adj = p.get("adjudicates")
        anomaly = p.get("anomaly")
        facts = anomaly_facts(anomaly, now_ms()) if isinstance(anomaly, dict) and anomaly else []
        return _page(
            "item.html",
            me,
            item=it,
            p=p,
            conv=conv,
            comparison=comparison,
            sides=sides,
            adjudicates=adj,
            anomaly_facts=facts,
            lease=held,
            done=done[:128],
            filter_query=filter_query,
            taxonomy=service.settings.taxonomy,
            show_verdicts=service.shows_verdicts(me, it),
            lease_ms=service.queues.lease_ms,
            can_decide=me.role is not Role.OPERATOR and bool(held) and it.status == "open",
            precision=await service.precision_cached(),
        )

    @ui.get("/insights")
    async def insights(request: Request) -> HTMLResponse:
        me = current_reviewer(request)
        rows = [await service.agreement(name) for name in service.queue_names(me)]
        return _page("insights.html", me, rows=rows, precision=await service.precision())
