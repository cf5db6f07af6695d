"""Reviewer authentication: bearer tokens (hashed like app keys) or a console session cookie.

A login exchanges a reviewer token for a random session id; Redis keeps only the SHA-256 of the
session id (``rollguard:review:session:<hash>`` -> reviewer name, TTL ``review.session_ttl_s``).
The cookie is HttpOnly and SameSite=Strict; JSON writes authenticated by the cookie must also send
the header ``X-Rollguard-Review: 1`` (a cross-site form cannot), so the console is not open to
request forgery.

Order: every review route (API and console) is built with ``guarded_route``, whose guard
authenticates (401) and checks the grants the URL alone decides (403) *before* FastAPI reads or
validates the body, query or path values, so an unauthenticated client never learns the body
schema from a 422 and never gets one instead of its 401.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from gateway.review.config import ReviewerSpec, ReviewSettings
from gateway.store.errors import redis_errors
from gateway.store.keys import review_session
from gateway.store.streams import text
from rollguard.errors import AuthenticationFailed, RollguardError
from rollguard.settings import hash_api_key

Guard = Callable[[Request, str], Awaitable[None]]
"""``guard(request, route_path)``: raises ``RollguardError`` (401/403/400) or returns; may put the
reviewer on ``request.state.reviewer``. ``route_path`` is the route's template
(``/v1/review/queues/{queue}/claim``); path parameters are in ``request.path_params``."""

ErrorRenderer = Callable[[Request, RollguardError | RequestValidationError], Response]
"""Turns a guard or handler error into the response (JSON for the API, a page for the console)."""

COOKIE = "rollguard_review"
CSRF_HEADER = "x-rollguard-review"


class ReviewAuth:
    """Resolves a request to its ``ReviewerSpec``."""

    def __init__(self, settings: ReviewSettings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis

    def by_token(self, token: str) -> ReviewerSpec | None:
        """The reviewer whose token this is (constant-time hash comparison), else None."""
        wanted = hash_api_key(token)
        found = None
        for r in self.settings.reviewers:
            if r.token_hash and secrets.compare_digest(r.token_hash, wanted):
                found = r
        return found

    async def login(self, token: str) -> tuple[ReviewerSpec, str]:
        """``(reviewer, session id)`` for a valid token. Raises ``AuthenticationFailed``."""
        reviewer = self.by_token(token.strip())
        if reviewer is None:
            raise AuthenticationFailed("unknown reviewer token")
        sid = secrets.token_urlsafe(32)
        with redis_errors("cannot store the review session"):
            await self.redis.set(_key(sid), reviewer.name, ex=self.settings.session_ttl_s)
        return reviewer, sid

    async def logout(self, sid: str) -> None:
        with redis_errors("cannot delete the review session"):
            await self.redis.delete(_key(sid))

    async def by_session(self, sid: str) -> ReviewerSpec | None:
        with redis_errors("cannot read the review session"):
            name = await self.redis.get(_key(sid))
        if name is None:
            return None
        return self.settings.reviewer(text(name))

    async def reviewer(self, request: Request, *, write: bool = False) -> ReviewerSpec:
        """The authenticated reviewer. ``write`` requires the CSRF header for cookie sessions.
        Raises ``AuthenticationFailed`` (401)."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            r = self.by_token(auth[7:].strip())
            if r is None:
                raise AuthenticationFailed("unknown reviewer token")
            return r
        sid = request.cookies.get(COOKIE)
        if sid:
            r = await self.by_session(sid)
            if r is not None:
                if write and request.headers.get(CSRF_HEADER) != "1":
                    raise AuthenticationFailed(f"cookie-authenticated writes need the {CSRF_HEADER} header")
                return r
        raise AuthenticationFailed("log in with a reviewer token (Authorization: Bearer or /review/login)")


def _key(sid: str) -> str:
    return review_session(hashlib.sha256(sid.encode()).hexdigest())


def guarded_route(guard: Guard, render: ErrorRenderer) -> type[APIRoute]:
    """An ``APIRoute`` class that runs ``guard`` before FastAPI's own handler (which reads the body
    and validates body, query and path values), and renders any ``RollguardError`` or
    ``RequestValidationError`` from either with ``render``."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            path = self.path

            async def route(request: Request) -> Response:
                try:
                    await guard(request, path)
                    return await handler(request)
                except (RollguardError, RequestValidationError) as exc:
                    return render(request, exc)

            return route

    return GuardedRoute


def current_reviewer(request: Request) -> ReviewerSpec:
    """The reviewer the route's guard authenticated. Raises ``AuthenticationFailed`` when the
    guard did not run (a route built without ``guarded_route``)."""
    reviewer = getattr(request.state, "reviewer", None)
    if not isinstance(reviewer, ReviewerSpec):
        raise AuthenticationFailed("log in with a reviewer token (Authorization: Bearer or /review/login)")
    return reviewer
