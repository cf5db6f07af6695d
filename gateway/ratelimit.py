"""Rate limits and quotas per tenant and per app key (``rate_limits:``,
``rollguard.ratelimit_settings``), counted in the shared store with the ``limits`` library
(MIT; its async Redis storage over our ``redis.asyncio``), so every gateway process of one
deployment spends one budget.

* **requests per minute** (``rpm``): ``limits``' moving window (a sorted list per budget,
  checked and appended in one Lua script, atomic in the store): at most ``rpm`` requests are
  admitted in any 60 s, over all processes;
* **tokens per minute** (``tpm``): a fixed 60 s window that starts with the budget's first
  charged request. A request is admitted while the window's tokens are below ``tpm``; its
  ``usage.total_tokens`` is charged once the reply is over (the size of a reply is not known
  before), so one request may overshoot the budget: the next are refused until the window ends.
  The same rule as LiteLLM's proxy and OpenAI's own token limits. A stream that ends without its
  usage chunk (the client left) is charged ``estimated_tokens``: prompt and delivered completion
  at ``CHARS_PER_TOKEN`` characters a token; a non-streamed request the client leaves (its
  upstream call cancelled) is charged ``prompt_tokens`` by the route.

A request must fit every budget that applies to it: its key's and its tenant's (a tenant without
an entry of its own: a budget of the ``default`` entry's size, counted for that tenant alone). A
refused request gets ``RateLimited``: HTTP 429, OpenAI's ``rate_limit_exceeded`` shape, and
``Retry-After`` (whole seconds until the oldest request leaves the moving window, or the token
window ends). The upstream is never called, and a refused request spends no budget: every
window's room is read first, and only when all have room are the request budgets hit (each hit is
the library's atomic check-and-count), the one with the least room first. Racing requests right at
a limit could still leave an earlier hit counted for a request a later hit refuses; measured: none
of 450 refused in 600 requests, 48 at once, over two limiters on one Valkey (key 150 rpm with
tenant 10000, 160 or the reverse; the old tenant-first hits leaked all 450).

A request the gateway admitted but then refused itself because every deployment of its model was
at its own ``rpm``/``tpm`` (``DeploymentsAtLimit``: 429 ``upstream_rate_limited``, no upstream
called) spends no caller budget either: ``settle`` takes its request back (``refund``) before the
response goes out. The moving window keeps timestamps, not request ids, so the refund removes the
budget's newest entry: the count is exact, and the window may free a slot earlier by at most the
time between this request and the newest one counted after it.

No budget configured (the default), or none that applies to the caller: no store round trip
(``RateLimits.ticket`` returns None). Store down or slower than ``store_timeout_ms``: the request
is admitted (fail open) and a warning is logged at most every ``WARN_EVERY_S`` seconds; a rate
limit must not take the gateway down with the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.errors import StorageError
from limits.util import WindowStats
from redis.exceptions import RedisError

from gateway.exchange import ChatResult
from rollguard.errors import RateLimited, UpstreamRateLimited
from rollguard.ratelimit_settings import Limit, RateLimitSettings
from rollguard.types import Interaction

log = logging.getLogger("rollguard.ratelimit")

WARN_EVERY_S = 30.0
"""Seconds between two "store down, failing open" warnings."""


class DeploymentsAtLimit(UpstreamRateLimited):
    """Every deployment of the requested model (and of its fallbacks) is at its own ``rpm``/``tpm``
    (``gateway.upstream.deployment_limits``): 429 ``upstream_rate_limited`` with ``Retry-After``,
    no upstream called, so the caller's budgets are refunded (``settle``)."""


@dataclass(frozen=True, slots=True)
class Budget:
    """One configured budget: ``scope`` (``tenant``, ``key`` or ``deployment``), ``name`` and its
    limits."""

    scope: str
    name: str
    limit: Limit

    @property
    def label(self) -> str:
        return f"{self.scope} {self.name!r}"

    def requests(self) -> RateLimitItemPerMinute | None:
        return RateLimitItemPerMinute(self.limit.rpm, namespace="rpm") if self.limit.rpm else None

    def tokens(self) -> RateLimitItemPerMinute | None:
        return RateLimitItemPerMinute(self.limit.tpm, namespace="tpm") if self.limit.tpm else None


@dataclass(frozen=True, slots=True)
class Ticket:
    """The budgets one request must fit (its tenant's, its key's): what ``admit`` checks and
    ``charge`` charges."""

    budgets: tuple[Budget, ...]


class RateLimits:
    """The per-process limiter. ``ticket(tenant, key)`` (no I/O) -> None when nothing applies;
    else ``await admit(ticket)`` before the upstream call (raises ``RateLimited``) and
    ``await charge(ticket, tokens)`` after the reply. Build with ``RateLimits.start`` (or
    ``RateLimits.disabled()``), ``await aclose()`` at shutdown."""

    def __init__(
        self,
        settings: RateLimitSettings,
        storage: Storage | None = None,
        deployments: Mapping[str, Limit] | None = None,
    ) -> None:
        self._tenants = {n: Budget("tenant", n, lim) for n, lim in settings.tenants.items()}
        self._keys = {n: Budget("key", n, lim) for n, lim in settings.keys.items()}
        self._deployments = {n: Budget("deployment", n, lim) for n, lim in (deployments or {}).items()}
        self._default = self._tenants.get("default")
        self._callers = bool(self._tenants or self._keys) and storage is not None
        budgets = (*self._tenants.values(), *self._keys.values(), *self._deployments.values())
        self._items = {id(b): (b.requests(), b.tokens()) for b in budgets}
        self._deployment_tickets = (
            {n: Ticket((b,)) for n, b in self._deployments.items()} if storage is not None else {}
        )
        self._timeout = settings.store_timeout_ms / 1000.0
        self._storage = storage
        self._requests = MovingWindowRateLimiter(storage) if storage is not None else None
        self._tokens = FixedWindowRateLimiter(storage) if storage is not None else None
        self._pool: aioredis.ConnectionPool | None = None
        self._key_prefix = settings.key_prefix
        self._warned = -math.inf

    @classmethod
    def disabled(cls) -> RateLimits:
        """No budgets: ``ticket`` is always None."""
        return cls(RateLimitSettings())

    @classmethod
    def in_memory(cls, deployments: Mapping[str, Limit]) -> RateLimits:
        """Deployment budgets counted in this process only (``limits``' memory storage): the
        router's limiter when it is built without the store (unit tests, tools)."""
        return cls(RateLimitSettings(), MemoryStorage(), deployments)

    @classmethod
    def start(
        cls,
        settings: RateLimitSettings,
        redis_url: str | None,
        deployments: Mapping[str, Limit] | None = None,
    ) -> RateLimits:
        """The limiter of ``settings`` (and of the per-deployment ``deployments`` budgets, by
        deployment name) counting in the store at ``redis_url`` (its own small connection pool
        with ``store_timeout_ms`` socket timeouts). No budgets or no store URL: the disabled
        limiter (no connection is made)."""
        if not (settings.enabled or deployments) or not redis_url:
            return cls.disabled()
        timeout = settings.store_timeout_ms / 1000.0
        pool = aioredis.ConnectionPool.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=64
        )
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix=settings.key_prefix,
            wrap_exceptions=True,
            **options,
        )
        limiter = cls(settings, storage, deployments)
        limiter._pool = pool
        return limiter

    def ticket(self, tenant: str, key: str | None) -> Ticket | None:
        """The budgets of a request from ``tenant`` with the app key named ``key`` (None: an
        unnamed key or no auth), the key's first; None when none applies (no store round trip
        then). A tenant without an entry of its own gets a budget of the ``default`` entry's size,
        counted for that tenant alone (its own counters, named by the tenant)."""
        if not self._callers:  # the default: no tenant or key budget, no work
            return None
        found = self._tenants.get(tenant)
        if found is None and self._default is not None:
            found = self._own_default(tenant)
        by_key = self._keys.get(key) if key is not None else None
        if found is None and by_key is None:
            return None
        return Ticket(tuple(b for b in (by_key, found) if b is not None))

    def _own_default(self, tenant: str) -> Budget:
        """``tenant``'s budget of the ``default`` entry's limits, made once per tenant (tenant
        names come from ``gateway.api_keys``: a finite set)."""
        assert self._default is not None
        found = self._tenants[tenant] = Budget("tenant", tenant, self._default.limit)
        self._items[id(found)] = self._items[id(self._default)]
        return found

    def deployment(self, name: str) -> Ticket | None:
        """The budget of the deployment ``name`` (``rpm``/``tpm`` in its ``litellm_params``)."""
        return self._deployment_tickets.get(name)

    async def admit(self, ticket: Ticket) -> None:
        """Count one request against every budget of ``ticket``, refusing it when one is spent.

        Raises ``RateLimited`` (429, ``retry_after`` seconds). A refused request spends no budget:
        every window's room is read first (concurrently, read only), and only when all have room
        is each request budget hit (the library's atomic check-and-count), the tightest first.
        Store errors: admitted, warning logged."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._admit(ticket)
        except (StorageError, RedisError, OSError, TimeoutError) as exc:
            self._store_down(exc)

    async def _admit(self, ticket: Ticket) -> None:
        """``admit`` without the store-error handling: every window's room read at once, then
        the request budgets hit, the one with the least room first."""
        assert self._requests is not None and self._tokens is not None
        requests = [(b, item) for b in ticket.budgets if (item := self._items[id(b)][0]) is not None]
        windows: list[tuple[Budget, RateLimitItemPerMinute, RateLimiter, str]] = [
            (b, item, self._tokens, f"{b.limit.tpm} tokens per minute")
            for b in ticket.budgets
            if (item := self._items[id(b)][1]) is not None
        ]
        if len(requests) > 1:  # one request window alone: its atomic hit checks and counts at once
            windows += [
                (b, item, self._requests, f"{b.limit.rpm} requests per minute") for b, item in requests
            ]
        stats: list[WindowStats] = (
            await asyncio.gather(
                *(lim.get_window_stats(item, b.scope, b.name) for b, item, lim, _ in windows)
            )
            if windows
            else []
        )
        for (b, _, _, what), st in zip(windows, stats, strict=True):
            if st.remaining < 1:
                raise _refused(b, what, st.reset_time)
        room = {
            id(w[0]): st.remaining for w, st in zip(windows, stats, strict=True) if w[2] is self._requests
        }
        # Racing requests may all see room near a limit; a loser at a later hit leaves its earlier
        # hits counted. Hitting the budget with the least room first keeps that rare.
        for b, item in sorted(requests, key=lambda r: room.get(id(r[0]), 0)):
            await self._hit(b, item)

    async def _hit(self, budget: Budget, item: RateLimitItemPerMinute) -> None:
        """Count one request in ``budget``'s moving window, or raise its ``RateLimited``."""
        assert self._requests is not None
        if not await self._requests.hit(item, budget.scope, budget.name):
            stats = await self._requests.get_window_stats(item, budget.scope, budget.name)
            raise _refused(budget, f"{budget.limit.rpm} requests per minute", stats.reset_time)

    async def refund(self, ticket: Ticket) -> None:
        """Take back the request ``admit`` counted in each request budget of ``ticket`` (the
        budget's newest moving-window entry: see the module docstring). Store errors: logged, not
        raised."""
        if self._storage is not None:
            await self._each(ticket, 0, lambda item, b: self._unhit(item.key_for(b.scope, b.name)))

    async def _unhit(self, key: str) -> None:
        """Drop the newest entry of the moving window ``key`` (``limits``' layout: in memory a list
        newest first, in Redis a list under ``<key_prefix>:<key>`` pushed at the head)."""
        if isinstance(self._storage, MemoryStorage):
            entries = self._storage.events.get(key)
            if entries:
                entries.pop(0)
        elif self._pool is not None:
            await aioredis.Redis(connection_pool=self._pool).lpop(f"{self._key_prefix}:{key}")

    async def charge(self, ticket: Ticket, tokens: int) -> None:
        """Add ``tokens`` (a finished reply's ``usage.total_tokens``) to each token budget of
        ``ticket``. Store errors: logged, not raised (the reply is already out)."""
        counter = self._tokens
        if tokens > 0 and counter is not None:
            await self._each(ticket, 1, lambda item, b: counter.hit(item, b.scope, b.name, cost=tokens))

    async def _each(
        self,
        ticket: Ticket,
        which: int,
        act: Callable[[RateLimitItemPerMinute, Budget], Awaitable[object]],
    ) -> None:
        """``act(item, budget)`` for each budget of ``ticket`` with a request (``which`` 0) or
        token (1) window, within ``store_timeout_ms`` in all. Store errors: logged, not raised."""
        try:
            async with asyncio.timeout(self._timeout):
                for b in ticket.budgets:
                    item = self._items[id(b)][which]
                    if item is not None:
                        await act(item, b)
        except (StorageError, RedisError, OSError, TimeoutError) as exc:
            self._store_down(exc)

    def _store_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            what = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning("rate limits: store unavailable (%s): admitting requests unchecked", what)

    async def aclose(self) -> None:
        """Close the counters' connection pool."""
        if self._pool is not None:
            await self._pool.disconnect()


def _refused(budget: Budget, what: str, reset_time: float) -> RateLimited:
    """The 429 for ``budget``: ``reset_time`` (epoch seconds) -> ``retry_after`` (>= 1 s)."""
    wait = max(1.0, math.ceil(reset_time - time.time()))
    return RateLimited(
        f"Rate limit reached for {budget.label}: {what}. Please try again in {int(wait)}s.",
        retry_after=wait,
    )


async def settle(result: ChatResult, ticket: Ticket, limits: RateLimits) -> ChatResult:
    """The route's last step for an admitted request: a ``DeploymentsAtLimit`` refusal gets its
    request refunded now (before the 429 goes out, so the caller's next request already sees the
    room); any other result is ``charged``."""
    if isinstance(result.error, DeploymentsAtLimit):
        await limits.refund(ticket)
        return result
    return charged(result, ticket, limits)


def charged(result: ChatResult, ticket: Ticket, limits: RateLimits) -> ChatResult:
    """``result`` that charges the reply's tokens (``interaction.usage``, read when the reply is
    over) to ``ticket``'s token budgets: after the audit write of a JSON reply, at the end of a
    stream (a task of its own: a stream's cleanup may run in a cancelled task). A stream that ended
    without its usage chunk (the client left, the upstream broke off or sent none) is charged
    ``estimated_tokens`` instead: the upstream was called and spent tokens all the same."""
    interaction = result.interaction
    stream = result.stream is not None

    async def charge() -> None:
        usage = interaction.usage
        spent = usage_tokens(usage) if usage or not stream else estimated_tokens(interaction)
        await limits.charge(ticket, spent)

    if result.stream is not None:
        return dataclasses.replace(result, stream=_then(result.stream, charge))
    first = result.after

    async def after() -> None:
        try:
            if first is not None:
                await first()
        finally:
            await charge()

    return dataclasses.replace(result, after=after)


_PENDING: set[asyncio.Future[None]] = set()
"""Charges in flight (a task with no reference may be collected before it runs)."""


async def _then(
    stream: AsyncIterator[bytes], done: Callable[[], Coroutine[Any, Any, None]]
) -> AsyncIterator[bytes]:
    """``stream``'s bytes; when it ends (however), ``stream`` is closed at once (its cleanup records
    the interaction: closing this wrapper at its ``yield`` must close the relay too, not leave it to
    the garbage collector) and then ``done()`` runs in a task of its own."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()  # a no-op when the relay already ended (read to the end, or cancelled)
        task = asyncio.ensure_future(done())
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)


def usage_tokens(usage: dict[str, int]) -> int:
    """Tokens a reply spent: ``total_tokens``, else ``prompt_tokens + completion_tokens``."""
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


CHARS_PER_TOKEN = 4
"""Characters per token of the estimate: OpenAI's rule of thumb for English text ("a token is
about 4 characters", help.openai.com, "What are tokens and how to count them?")."""


def estimated_tokens(interaction: Interaction) -> int:
    """Tokens of a reply whose usage never came: the prompt (every message's text and tool calls)
    plus the completion the client was delivered (text and tool calls), each ``ceil(characters /
    CHARS_PER_TOKEN)``. Lower bounds: image and audio parts are not counted, nor text the upstream
    sent that was still held back for the stream guardrails when the stream ended."""
    completion = len(interaction.completion or "") + _json_chars(interaction.tool_calls)
    return prompt_tokens(interaction.messages) + math.ceil(completion / CHARS_PER_TOKEN)


def prompt_tokens(messages: object) -> int:
    """The estimate of a prompt's tokens: ``ceil(characters / CHARS_PER_TOKEN)`` of every message's
    text and tool calls (0 for anything but a list of message objects)."""
    if not isinstance(messages, list):
        return 0
    chars = sum(
        _text_chars(m.get("content")) + _json_chars(m.get("tool_calls"))
        for m in messages
        if isinstance(m, dict)
    )
    return math.ceil(chars / CHARS_PER_TOKEN)


def _text_chars(content: object) -> int:
    """Characters of a message's ``content``: a string, or a list of parts (their ``text``)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _json_chars(calls: object) -> int:
    """Characters of tool calls as JSON (0 for none)."""
    return len(orjson.dumps(calls, default=str)) if calls else 0
