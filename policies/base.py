"""The guardrail extension point: the ``Policy`` protocol, what a check sees (``CheckContext``) and
what it returns (``PolicyResult``).

A policy is built once from its config params (compile patterns, load a model in ``__init__``) and
its ``check`` is cheap and side-effect free. Blocks are *returned* (``Verdict.BLOCK``), never
raised: an exception from ``check`` means the policy failed, and the pipeline applies its
``on_error``.

Positions: a policy that blocks judges the *current turn* (``CheckContext.current_turn``), so a
conversation that resends an earlier blocked turn is judged on its new turn only. Transforms
(redaction) apply to every message, history included.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from rollguard.types import Evidence, Message, Stage, Verdict


class Execution(enum.StrEnum):
    """How the pipeline runs a policy's ``check``."""

    INLINE = "inline"
    """Called directly on the event loop (fast, CPU-bound, microseconds to ~1 ms). The timeout is
    enforced on the measured elapsed time: a late result is discarded and ``on_error`` applies."""
    THREAD = "thread"
    """Run in a worker thread with a hard timeout (slow or blocking checks)."""


PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_[1-9][0-9]{0,8}>")
"""The shape of a redaction placeholder, ``<KIND_n>`` (``<EMAIL_ADDRESS_1>``; no groups). Text of
this shape that the vault did not issue is a look-alike."""


@dataclass(slots=True)
class RedactionVault:
    """Per-request placeholder vault: ``<EMAIL_ADDRESS_1>`` -> original value.

    Lives only for one request (never persisted, never logged) so that redacted placeholders can
    optionally be restored in the response. The same value always gets the same placeholder.

    Look-alikes: text already in the request may contain placeholder-shaped strings (typed by the
    user, copied from an earlier redacted reply, planted in a document). A transform calls
    ``reserve`` on every text of the request before asking for placeholders, and the vault then
    never issues a placeholder that occurs in that text, so ``restore`` cannot turn a look-alike
    into a real value. ``restore`` replaces only placeholders this vault issued, in one pass.
    """

    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _by_placeholder: dict[str, str] = field(default_factory=dict)
    _counters: dict[str, int] = field(default_factory=dict)
    _reserved: set[str] = field(default_factory=set)

    def reserve(self, text: str) -> None:
        """Note every placeholder-shaped string in ``text`` that this vault did not issue, so it is
        never issued. Linear in ``len(text)``."""
        if "<" not in text:
            return
        for m in PLACEHOLDER_RE.finditer(text):
            ph = m.group()
            if ph not in self._by_placeholder:
                self._reserved.add(ph)

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder for ``value`` of entity ``kind`` (e.g. ``EMAIL_ADDRESS``): the next
        ``<kind_n>`` not reserved. Amortised O(1): numbers only grow, and each reserved string is
        skipped at most once."""
        key = (kind, value)
        found = self._by_value.get(key)
        if found is not None:
            return found
        n = self._counters.get(kind, 0)
        while True:
            n += 1
            ph = f"<{kind}_{n}>"
            if ph not in self._reserved:
                break
        self._counters[kind] = n
        self._by_value[key] = ph
        self._by_placeholder[ph] = value
        return ph

    def restore(self, text: str) -> str:
        """``text`` with every placeholder this vault issued replaced by its original value (one
        pass: a restored value is never scanned again; other ``<KIND_n>`` text stays as it is).
        Linear in ``len(text)``."""
        if not self._by_placeholder or "<" not in text:
            return text
        issued = self._by_placeholder
        return PLACEHOLDER_RE.sub(lambda m: issued.get(m.group(), m.group()), text)

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __repr__(self) -> str:  # never show values
        return f"RedactionVault({len(self)} placeholders)"


@dataclass(slots=True)
class CheckContext:
    """What a policy sees.

    ``messages``: the request messages in OpenAI wire shape (after earlier transforms).
    ``completion``: for ``post_call`` the full completion text; for ``stream`` the text window under
    inspection (released context + held-back text). ``completion_tool_calls``: reassembled tool
    calls of the completion (``post_call``/``stream``). ``tenant``: the caller's tenant id.
    """

    stage: Stage
    messages: list[Message]
    tenant: str = "default"
    completion: str | None = None
    completion_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    vault: RedactionVault = field(default_factory=RedactionVault)
    max_tokens: int | None = None

    @property
    def turn_start(self) -> int:
        """Index of the first message of the current turn: the one after the last ``assistant``
        message (0 when there is none)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].get("role") == "assistant":
                return i + 1
        return 0

    def current_turn(self) -> Iterator[tuple[int, Message]]:
        """``(index, message)`` for the messages of the current turn."""
        start = self.turn_start
        for i in range(start, len(self.messages)):
            yield i, self.messages[i]

    def system_prompt(self) -> str:
        """The operator's instructions: every ``system``/``developer`` message's text, joined."""
        from rollguard.types import text_of

        return "\n".join(
            text_of(m.get("content")) for m in self.messages if m.get("role") in ("system", "developer")
        )


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """A policy's answer. ``score`` in [0, 1] (0 benign .. 1 certain violation); ``reason`` is one
    line naming what was found, never the matched text. A ``redact`` result carries the rewritten
    ``messages`` (pre_call) or ``completion`` (post_call / stream)."""

    verdict: Verdict
    score: float = 0.0
    reason: str = ""
    evidence: tuple[Evidence, ...] = ()
    messages: list[Message] | None = None
    completion: str | None = None
    completion_tool_calls: list[dict[str, Any]] | None = None

    @staticmethod
    def allow(reason: str = "nothing found", score: float = 0.0) -> PolicyResult:
        return PolicyResult(Verdict.ALLOW, score, reason)


@runtime_checkable
class Policy(Protocol):
    """A guardrail layer. ``type_name`` is the registry name (``pii``); ``stages`` where it can run;
    ``transforms`` True when it rewrites content (run sequentially, in list order) and False for
    read-only checks (run concurrently)."""

    type_name: ClassVar[str]
    stages: frozenset[Stage]
    transforms: bool
    execution: Execution

    def check(self, ctx: CheckContext) -> PolicyResult:
        """Judge ``ctx``. Must not raise for any content; raising means the policy is broken."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """A JSON-ready description of the policy's configuration (no secrets)."""
        ...
