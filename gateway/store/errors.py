"""The one place redis exceptions become rollguard's: ``redis_errors`` (a context manager) and
``redis_boundary`` (the same as a decorator for coroutine functions), in the style of httpx's
``map_httpcore_exceptions`` (``httpx/_transports/default.py``).

Mapping (most specific first, ``raise ... from exc`` so the cause stays in the traceback)::

    redis.exceptions.TimeoutError      -> StoreTimeout
    redis.exceptions.ConnectionError   -> StoreUnavailable
    any other redis.exceptions.RedisError -> StoreError

Every caller that talks to Redis (the audit writer, the detector worker, the review queue, review
auth and the review service) maps through here, so nothing from ``redis`` leaks past ``gateway/``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rollguard.errors import StoreError, StoreTimeout, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def store_error(exc: RedisError, action: str, *, detail: bool = False) -> StoreError:
    """The rollguard error for ``exc``: message ``"<action>: <redis class>"`` (plus the redis
    message when ``detail``; off by default, as a redis message may name keys or hosts)."""
    text = f"{action}: {type(exc).__name__}" + (f": {exc}" if detail else "")
    if isinstance(exc, RedisTimeoutError):
        return StoreTimeout(text)
    if isinstance(exc, RedisConnectionError):
        return StoreUnavailable(text)
    return StoreError(text)


@contextlib.contextmanager
def redis_errors(action: str, *, detail: bool = False) -> Iterator[None]:
    """Raise every ``RedisError`` inside the block as the matching ``StoreError`` subclass (see the
    module docstring); ``action`` says what was being done (``"cannot read the anomalies
    stream"``)."""
    try:
        yield
    except RedisError as exc:
        raise store_error(exc, action, detail=detail) from exc


def redis_boundary(action: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator form of ``redis_errors`` for coroutine functions."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with redis_errors(action):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate


def redact_url(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
