"""The hold-back window of a streamed completion's text: ``HoldbackWindow`` releases text only
after it has been checked and is at least ``holdback`` characters behind the end, cut at
whitespace, so that a match spanning chunks is still caught and nothing unchecked reaches the
client. ``TextCheck`` is the check it calls. No I/O; ``gateway.streaming.guard`` drives it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rollguard.types import Verdict

__all__ = ["HoldbackWindow", "TextCheck"]

TextCheck = Callable[[str], Awaitable[tuple[Verdict, str]]]
"""The output check on a text window: ``window_text -> (verdict, rewritten window_text)``. The
window is already-released context followed by unreleased text. Return the text unchanged unless
redacting; must not raise (the gateway's wrapper applies the policies' ``on_error``)."""


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str, limit: int) -> int:
    i = 0
    la, lb = len(a), len(b)
    while i < limit and a[la - 1 - i] == b[lb - 1 - i]:
        i += 1
    return i


def _last_break(text: str, end: int, start: int = 0) -> int:
    """Index just after the last whitespace in ``text[start:end]``; ``start`` when there is none."""
    for i in range(end - 1, start - 1, -1):
        if text[i].isspace():
            return i + 1
    return start


class HoldbackWindow:
    """Hold back streamed text until it is checked and safely behind the end.

    ``feed(delta)`` appends a content delta and returns the text that may be released now ("" if
    none); ``finish()`` checks and returns the rest. Rules (the invariant: nothing unchecked and
    nothing within ``holdback`` characters of the end is released, except at ``finish``):

    1. A release point is the last whitespace at least ``holdback`` characters before the end of the
       text received so far (so no word, hence no e-mail/URL/key, is split at the release point;
       entities containing spaces, like phone numbers and names, are protected by ``holdback``).
       A run of more than ``max_pending`` characters without whitespace is cut at the limit.
    2. The check runs only when a release point exists that frees at least ``min_release``
       characters (and at ``finish``), on ``context + unreleased`` where ``context`` is the last
       ``context_chars`` released characters (default ``holdback``).
    3. If the check rewrites (redacts) the text, the rewritten text is released. The changed region
       is located by common prefix/suffix; when it reaches past the release point the release point
       moves back to the whitespace before the change, and the unreleased tail is kept *raw* and
       checked again with the text that follows (so an entity whose first half already looked
       complete is judged whole).
    4. ``Verdict.BLOCK`` stops all release for good (``blocked`` becomes True).

    Attributes: ``verdict`` (most severe seen), ``checks`` (calls of ``check``), ``released`` (all
    released text, joined, i.e. the redacted completion), ``boundary_rewrites`` (times a rewrite
    touched already-released context: then the redacted remainder of the entity is sent, but its
    released start could not be recalled; raise ``holdback`` if this is non-zero).
    """

    def __init__(
        self,
        check: TextCheck,
        holdback: int = 128,
        *,
        context_chars: int | None = None,
        min_release: int = 1,
        max_pending: int | None = None,
    ) -> None:
        if holdback < 0 or min_release < 1:
            raise ValueError("holdback must be >= 0 and min_release >= 1")
        self._check = check
        self.holdback = holdback
        self.context_chars = holdback if context_chars is None else context_chars
        self.min_release = min_release
        self.max_pending = max_pending if max_pending is not None else max(4096, 8 * holdback)
        self._pending = ""
        self._context = ""
        self._released: list[str] = []
        self.blocked = False
        self.verdict = Verdict.ALLOW
        self.checks = 0
        self.boundary_rewrites = 0

    @property
    def released(self) -> str:
        return "".join(self._released)

    @property
    def pending(self) -> str:
        """Received but not yet released text (raw)."""
        return self._pending

    def append(self, delta: str) -> None:
        """Append ``delta`` without checking or releasing anything: the next ``feed`` (or
        ``finish``) checks it with the rest, so a burst of chunks that arrived together costs one
        check. Nothing is released by this call, so nothing unchecked can be."""
        if delta and not self.blocked:
            self._pending += delta

    async def feed(self, delta: str) -> str:
        """Append ``delta``; return the text released now ("" when none or when blocked)."""
        if self.blocked:
            return ""
        if delta:
            self._pending += delta
        limit = len(self._pending) - self.holdback
        if limit < self.min_release:
            return ""
        cut = _last_break(self._pending, limit)
        if cut == 0 and len(self._pending) > self.max_pending:
            cut = limit
        if cut < self.min_release:
            return ""
        return await self._run(cut, final=False)

    async def finish(self) -> str:
        """End of the stream: check everything unreleased and return it ("" when blocked)."""
        if self.blocked or not self._pending:
            return ""
        return await self._run(len(self._pending), final=True)

    async def _run(self, cut: int, *, final: bool) -> str:
        context, pending = self._context, self._pending
        window = context + pending
        verdict, rewritten = await self._check(window)
        self.checks += 1
        if verdict.severity > self.verdict.severity:
            self.verdict = verdict
        if verdict.is_block():
            self.blocked = True
            return ""
        if rewritten == window:
            out = pending[:cut]
            self._pending = pending[cut:]
            return self._emit(out)
        nctx = len(context)
        p = _common_prefix(window, rewritten)
        s = _common_suffix(window, rewritten, min(len(window), len(rewritten)) - p)
        change_end = len(window) - s  # end (exclusive) of the changed region in the raw window
        start = nctx
        if p < nctx:
            # The rewrite reaches into text already sent: resend the rewritten remainder from there.
            self.boundary_rewrites += 1
            start = p
        if final:
            out = rewritten[start:]
            self._pending = ""
            return self._emit(out)
        cut_w = nctx + cut
        if change_end <= cut_w:
            out = rewritten[start : len(rewritten) - (len(window) - cut_w)]
            self._pending = pending[cut:]
            return self._emit(out)
        if start < nctx:
            return ""  # the change straddles both ends: hold everything until more text or the end
        # The change reaches past the release point: release only the unchanged text before it.
        safe = _last_break(window, p, nctx) - nctx
        if safe < self.min_release:
            return ""
        out = pending[:safe]
        self._pending = pending[safe:]
        return self._emit(out)

    def _emit(self, out: str) -> str:
        if out:
            self._released.append(out)
            if self.context_chars:
                self._context = (self._context + out)[-self.context_chars :]
        return out
