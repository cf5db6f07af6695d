"""A bounded, thread-safe LRU of per-text results, so that a conversation's earlier messages (the
system prompt, the history re-sent with every turn) are scanned once and a 20-turn chat pays for
its new turn only.

Keys are ``(namespace, text)`` for short texts and ``(namespace, digest)`` for longer ones (BLAKE2b,
128 bits, ``hashlib``; a collision is a 2^-64 event per pair at the birthday bound, far below any
other failure rate here), so memory stays bounded by ``max_entries`` whatever the text sizes. The
namespace names the scorer *and its configuration version* (a finder's kind and entity set, a
model's file hash): a new configuration can never read an old result, and results of two
configurations live side by side. A result is only cached when it is small (``max_items``), so one
text with thousands of findings cannot blow the memory bound either.

Only pure functions of the text may be cached (a finder: text -> spans). Placeholders, evidence and
verdicts are still computed per request from the cached spans.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sized
from typing import Generic, TypeVar

__all__ = ["SHORT_KEY_CHARS", "ScoreCache", "text_key"]

V = TypeVar("V", bound=Sized)

SHORT_KEY_CHARS = 256
"""Texts up to this many characters are their own key (cheaper than hashing them)."""


DIGEST_MEMO_CHARS = 16_384
"""Digests of texts up to this many characters are remembered (``DIGEST_MEMO_ENTRIES`` of them,
least recently used dropped first), so that the policies of one request, which each key the same
system prompt and history texts, hash each text once: at most 128 x 16,384 characters (8 MiB of
string data at 4 bytes a character, 2 MiB for ASCII) stay referenced."""
DIGEST_MEMO_ENTRIES = 128


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_memo_digest = functools.lru_cache(maxsize=DIGEST_MEMO_ENTRIES)(_digest)
"""``_digest`` behind a bounded, thread-safe LRU keyed by the text (``str`` caches its own hash,
so a hit costs one dictionary look-up: ~0.1 us instead of ~2 us for a 750-character text)."""


def text_key(text: str) -> str | bytes:
    """The cache key of ``text``: itself when short, else its 16-byte BLAKE2b digest of the UTF-8
    bytes (lone surrogates, which JSON can carry, are encoded with ``surrogatepass``). The digests
    of texts up to ``DIGEST_MEMO_CHARS`` are memoised (the same key, computed once)."""
    n = len(text)
    if n <= SHORT_KEY_CHARS:
        return text
    return _memo_digest(text) if n <= DIGEST_MEMO_CHARS else _digest(text)


class ScoreCache(Generic[V]):
    """LRU of ``compute(text)`` results per ``(namespace, text)``. ``max_entries``: entries kept
    (least recently used evicted first); ``max_items``: results with more items (``len``) are
    returned but not kept. ``hits`` / ``misses`` count lookups."""

    def __init__(self, max_entries: int = 8192, max_items: int = 64) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_items = max_items
        self._data: OrderedDict[tuple[str, str | bytes], V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get_or_compute(self, namespace: str, text: str, compute: Callable[[str], V]) -> V:
        """The cached result for ``text`` under ``namespace``, else ``compute(text)`` (kept when it
        has at most ``max_items`` items). ``compute`` runs outside the lock; what it raises
        propagates and nothing is kept."""
        key = (namespace, text_key(text))
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        value = compute(text)
        if len(value) <= self.max_items:
            with self._lock:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
