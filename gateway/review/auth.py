"""Reviewer authentication: bearer tokens (hashed like app keys) or a console session cookie.

A login exchanges a reviewer token for a random session id; Redis keeps only the SHA-256 of the
session id (``rollguard:review:session:<hash>`` -> reviewer name, TTL ``review.session_ttl_s``).
The cookie is HttpOnly and SameSite=Strict; JSON writes authenticated by the cookie must also send
the header ``X-Rollguard-Review: 1`` (a cross-site form cannot), so the console is not open to
request forgery.
"""

from __future__ import annotations

import hashlib
import secrets

import redis.asyncio as aioredis
from fastapi import Request
from redis.exceptions import RedisError

from gateway.review.config import ReviewerSpec, ReviewSettings
from rollguard.errors import AuthenticationFailed, StoreError
from rollguard.settings import hash_api_key

COOKIE = "rollguard_review"
CSRF_HEADER = "x-rollguard-review"
_SESSION_PREFIX = "rollguard:review:session:"


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
        try:
            await self.redis.set(_key(sid), reviewer.name, ex=self.settings.session_ttl_s)
        except RedisError as exc:
            raise StoreError("cannot store the review session") from exc
        return reviewer, sid

    async def logout(self, sid: str) -> None:
        try:
            await self.redis.delete(_key(sid))
        except RedisError as exc:
            raise StoreError("cannot delete the review session") from exc

    async def by_session(self, sid: str) -> ReviewerSpec | None:
        try:
            name = await self.redis.get(_key(sid))
        except RedisError as exc:
            raise StoreError("cannot read the review session") from exc
        if name is None:
            return None
        return self.settings.reviewer(name.decode() if isinstance(name, bytes) else str(name))

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
    return _SESSION_PREFIX + hashlib.sha256(sid.encode()).hexdigest()
