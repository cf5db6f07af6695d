"""The console's rollout pages: ``/review/rollouts`` (every rollout: state, canary share, next
step, time in step, last outcome) and ``/review/rollouts/{id}`` (one rollout: each metric's
estimate and interval against its tolerance as a table and a plot, the sample-ratio check, the
canary's review items with their verdicts, and an Approve button for leads and operators).

The pages read ``RolloutView`` records (``gateway.review.rollout_view``) from the source in the
``RolloutViewSlot``; they write nothing. The Approve button posts (``static/console.js``, with the
session cookie and the console's request-forgery header) to ``POST /v1/rollouts/{id}/approve``,
the rollout controller's route, with the step it approves (``{"step": k}``), so two clicks on one
step promote once.

Review items of the canary, merged with the ones the view names: items of the queues the viewer
may see whose payload (or anomaly summary) names the rollout (``rollout_id``), whose flag
variants put the rollout's flag on ``canary``, or (no flag map, e.g. a detector anomaly) whose
variant is ``canary``. Verdicts are shown as the item page shows them (blind review: hidden
from reviewers until decided).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from gateway.review import rollout_plot
from gateway.review.auth import current_reviewer
from gateway.review.config import ReviewerSpec, Role
from gateway.review.queue import ReviewItem
from gateway.review.rollout_view import MetricRow, ReviewItemView, RolloutView, RolloutViewSlot
from gateway.review.service import ReviewService
from rollguard.errors import NotFound

Page = Callable[..., HTMLResponse]
"""``page(template, me, status=200, **context)``: the console's page renderer."""

APPROVERS = frozenset({Role.LEAD, Role.OPERATOR})
"""Roles that may promote a rollout to its next step (issue 8, human gate)."""

ITEM_SCAN = 200
"""Open items read per queue when gathering the canary's items."""


def _fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table cell: ``-`` for None or non-finite, else ``digits`` significant."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}"


def _secs(s: float) -> str:
    s = int(s)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def shown(row: MetricRow) -> dict[str, str]:
    """The current point of ``row`` in readable units (``rollout_plot``'s axes): rates and p95
    shares in percent / points, the reply length as mean log characters and the change of the
    geometric-mean length in %. Keys: control, canary, effect, interval, tolerance, unit."""
    p = row.current
    if p is None:
        return dict.fromkeys(("control", "canary", "effect", "interval", "tolerance", "unit"), "-")
    log_scale = row.scale.startswith("difference of mean log")

    def tf(v: float | None) -> float | None:
        if v is None:
            return None
        return 100.0 * math.expm1(v) if log_scale else 100.0 * v

    def arm(v: float | None) -> str:
        if log_scale:
            return _fmt(v, 4)
        return "-" if v is None else f"{100.0 * v:.2f} %"

    unit = "length change %" if log_scale else "points"
    return {
        "control": arm(p.control_mean),
        "canary": arm(p.canary_mean),
        "effect": _fmt(tf(p.effect)),
        "interval": f"[{_fmt(tf(p.lower))}, {_fmt(tf(p.upper))}]",
        "tolerance": _fmt(tf(p.tolerance)),
        "unit": unit,
    }


def register_filters(env: Environment) -> None:
    """The Jinja filters the rollout templates use (``num``, ``secs``, ``shown``)."""
    env.filters["num"] = _fmt
    env.filters["secs"] = _secs
    env.filters["shown"] = shown


def belongs(item: ReviewItem, view: RolloutView) -> bool:
    """True when ``item`` is a review item of ``view``'s canary (module docstring)."""
    p = item.payload
    anomaly = p.get("anomaly")
    if p.get("rollout_id") == view.id or (isinstance(anomaly, dict) and anomaly.get("rollout_id") == view.id):
        return True
    flags = p.get("flags")
    variants = flags.get("variants") if isinstance(flags, dict) else None
    if isinstance(variants, dict):
        return variants.get(view.flag) == "canary"
    return item.variant == "canary"


def item_view(item: ReviewItem, show_verdicts: bool) -> ReviewItemView:
    """A review item as the rollout page lists it; verdict labels only when ``show_verdicts``."""
    verdicts = (
        tuple((who, str(v.get("label", ""))) for who, v in sorted(item.verdicts.items()))
        if show_verdicts
        else ()
    )
    return ReviewItemView(
        id=item.id,
        queue=item.queue,
        priority=item.priority.value,
        status=item.status,
        source=item.source,
        created_ms=item.created_ms,
        label=item.final_label if show_verdicts else None,
        verdicts=verdicts,
        verdict_count=len(item.verdicts),
        hidden=not show_verdicts and bool(item.verdicts),
    )


async def canary_items(service: ReviewService, me: ReviewerSpec, view: RolloutView) -> list[ReviewItemView]:
    """The canary's review items ``me`` may see (open, then decided in the window), newest first,
    merged with the items the view itself names (those first)."""
    seen = {it.id for it in view.review_items}
    out = list(view.review_items)
    found: list[ReviewItem] = []
    for q in service.queue_names(me):
        items = await service.queues.open_items(q, limit=ITEM_SCAN) + await service.window_items(q)
        found += [
            it for it in items
            if belongs(it, view) and (me.role is Role.OPERATOR or me.can_tenant(it.tenant))
        ]  # fmt: skip
    for it in sorted(found, key=lambda i: -i.created_ms):
        if it.id not in seen:
            seen.add(it.id)
            out.append(item_view(it, service.shows_verdicts(me, it)))
    return out


def rollout_routes(ui: APIRouter, service: ReviewService, slot: RolloutViewSlot, page: Page) -> None:
    """Register ``/rollouts`` and ``/rollouts/{rollout_id}`` on the console router ``ui``."""

    @ui.get("/rollouts")
    async def rollouts(request: Request) -> HTMLResponse:
        me = current_reviewer(request)
        return page("rollouts.html", me, rollouts=list(await slot.source.list_rollouts()))

    @ui.get("/rollouts/{rollout_id}")
    async def rollout(request: Request, rollout_id: str) -> HTMLResponse:
        me = current_reviewer(request)
        view = await slot.source.get_rollout(rollout_id)
        if view is None:
            raise NotFound("no such rollout")
        items = await canary_items(service, me, view)
        plot = await asyncio.to_thread(rollout_plot.svg, view)
        return page(
            "rollout.html",
            me,
            r=view,
            items=items,
            plot=plot,
            can_approve=me.role in APPROVERS,
        )
