"""``policies.privacy``: the one privacy redaction (audit records, upstream error messages, reviewer
notes), pure and usable on any text or JSON value."""

from __future__ import annotations

import base64
import enum
import json
from collections import OrderedDict
from typing import Any

from policies.base import RedactionVault
from policies.builtin.redaction import Span
from policies.privacy import PrivacyRedactor, redact_text
from rollguard.types import Interaction

EMAIL = "jane.roe@example.com"
KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"


def test_redact_text_masks_pii_and_secrets_and_keeps_clean_text() -> None:
    out = redact_text(f"user {EMAIL} sent {KEY}")
    assert EMAIL not in out and KEY not in out
    assert "<EMAIL_ADDRESS_1>" in out
    assert redact_text("plain text, nothing to hide") == "plain text, nothing to hide"


def test_a_record_is_swept_at_every_depth_with_one_vault() -> None:
    record = {"a": [EMAIL, {"b": EMAIL, EMAIL: 1}], "n": 4111111111111111, "ok": True, "x": 1.5}
    out = PrivacyRedactor().sweep(record, RedactionVault())
    assert out["a"][0] == out["a"][1]["b"] == "<EMAIL_ADDRESS_1>"
    assert "<EMAIL_ADDRESS_1>" in out["a"][1]  # a dict key is redacted too
    assert out["n"] != 4111111111111111 and "CREDIT_CARD" in str(out["n"])
    assert out["ok"] is True and out["x"] == 1.5
    assert record["a"][0] == EMAIL  # the input is not changed


def test_a_note_and_its_corrected_reply_share_placeholders() -> None:
    note, corrected = PrivacyRedactor().redact_note(f"wrote to {EMAIL}", f"Reply to {EMAIL}.")
    assert note == "wrote to <EMAIL_ADDRESS_1>"
    assert corrected == "Reply to <EMAIL_ADDRESS_1>."
    assert PrivacyRedactor().redact_note("", None) == ("", None)


def test_the_finders_are_configurable() -> None:
    def bob(text: str) -> list[Span]:
        i = text.find("Bob")
        return [Span("PERSON", i, i + 3)] if i >= 0 else []

    redactor = PrivacyRedactor(finders=[bob])
    assert redactor.redact_text(f"Bob <{EMAIL}>", RedactionVault()) == f"<PERSON_1> <{EMAIL}>"


class _ReferenceSweep(PrivacyRedactor):
    """The sweep as it was before its fast path (isinstance dispatch, ``redact_text`` on every
    string and key): the fast path must give the same output and issue the same placeholders in
    the same order."""

    def sweep(self, value: Any, vault: RedactionVault) -> Any:
        if isinstance(value, str):
            return self.redact_text(value, vault) if value else value
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            text = str(value)
            out = self.redact_text(text, vault)
            return value if out == text else out
        if isinstance(value, list | tuple):
            return [self.sweep(v, vault) for v in value]
        if isinstance(value, dict):
            return {self._key(k, vault): self.sweep(v, vault) for k, v in value.items()}
        return value


class _Kind(enum.StrEnum):
    MAIL = EMAIL


def _records() -> list[Any]:
    card = 4111111111111111
    decision = {"policy": "pii", "reason": "redacted 1 EMAIL_ADDRESS", "score": 1.0, "enforced": True}
    return [
        {"a": [EMAIL, {"b": EMAIL, EMAIL: 1}], "n": card, "ok": True, "x": 1.5, "none": None},
        {"decisions": [decision, dict(decision), {**decision, "reason": f"to {EMAIL}"}], "e": ""},
        {"": "", KEY: [KEY, (EMAIL, card)], "k": _Kind.MAIL, "od": OrderedDict([(EMAIL, "x")])},
        [["plain", "plain", f"{EMAIL} and bob.smith@example.org"], [1, 2, 3, False, True]],
        {"nested": {"deep": {"deeper": [{EMAIL: {KEY: card}}]}}, "obj": object.__name__},
        EMAIL,
        card,
        "",
        (EMAIL, "tuple"),
    ]


def test_the_fast_sweep_matches_the_reference_value_for_value_and_placeholder_for_placeholder() -> None:
    fast, slow = PrivacyRedactor(), _ReferenceSweep()
    for _ in range(2):  # the second round: the clean-string cache is warm
        fast_vault, slow_vault = RedactionVault(), RedactionVault()
        for record in _records():
            assert fast.sweep(record, fast_vault) == slow.sweep(record, slow_vault)
        assert fast_vault._by_placeholder == slow_vault._by_placeholder
        assert len(fast_vault) >= 4  # the records do carry findings
    out = fast.sweep({EMAIL: EMAIL, "k": _Kind.MAIL}, RedactionVault())
    assert out == {"<EMAIL_ADDRESS_1>": "<EMAIL_ADDRESS_1>", "k": "<EMAIL_ADDRESS_1>"}


def test_a_string_seen_clean_is_kept_and_one_with_a_finding_is_never_cached() -> None:
    redactor = PrivacyRedactor()
    assert redactor.sweep({"within limits": ["within limits"]}, RedactionVault()) == {
        "within limits": ["within limits"]
    }
    assert "within limits" in redactor._clean
    for _ in range(2):
        assert redactor.sweep([EMAIL], RedactionVault()) == ["<EMAIL_ADDRESS_1>"]
    assert EMAIL not in redactor._clean


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_an_encoded_secret_or_email_is_masked_whole_in_the_record() -> None:
    """Trial fault: ``"decode this: " + base64("token ghp_...")`` was stored verbatim."""
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    hidden_key, hidden_mail = _b64(f"token {token}"), _b64(f"write to {EMAIL} please")
    nested = _b64(_b64(f"key {KEY}"))
    args = json.dumps({"blob": hidden_mail})
    interaction = Interaction(
        id="i1",
        created_ms=0,
        tenant="",
        model="m",
        messages=[{"role": "user", "content": f"decode this: {hidden_key} and {nested}"}],
        completion=f"Sure: {hidden_mail}",
        tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}],
    )
    rec = PrivacyRedactor().redact_record(interaction)
    blob = json.dumps(rec)
    for value in (hidden_key, nested, hidden_mail):
        assert value not in blob
    assert rec["messages"][0]["content"].startswith("decode this: <ENCODED_GITHUB_TOKEN_1> and <ENCODED_")
    assert rec["completion"] == "Sure: <ENCODED_EMAIL_ADDRESS_1>"
    assert json.loads(rec["tool_calls"][0]["function"]["arguments"]) == {"blob": "<ENCODED_EMAIL_ADDRESS_1>"}


def test_benign_encoded_text_stays_in_the_record() -> None:
    benign = _b64("just some benign words here")
    interaction = Interaction(
        id="i2",
        created_ms=0,
        tenant="",
        model="m",
        messages=[{"role": "user", "content": f"decode {benign}"}],
    )
    assert PrivacyRedactor().redact_record(interaction)["messages"][0]["content"] == f"decode {benign}"


def test_encoded_runs_are_scanned_once_per_text_and_placeholders_are_issued_per_record() -> None:
    """The system prompt and history are re-sent with every turn: a text's encoded runs are
    decoded once (cached per text), yet each record gets its own placeholders from its own vault,
    and a second record with the same text is masked exactly like the first."""
    hidden = _b64(f"write to {EMAIL} please")
    text = f"decode this: {hidden} then {hidden} and also {_b64('harmless words only here')}"
    redactor = PrivacyRedactor()
    calls: list[str] = []
    original = redactor._run_kind

    def counting(run: str) -> str | None:
        calls.append(run)
        return original(run)

    redactor._run_kind = counting  # type: ignore[method-assign]

    def record(i: int) -> dict[str, Any]:
        return redactor.redact_record(
            Interaction(
                id=f"i{i}", created_ms=0, tenant="", model="m", messages=[{"role": "user", "content": text}]
            )
        )

    first, second = record(1), record(2)
    assert first["messages"] == second["messages"]
    masked = first["messages"][0]["content"]
    assert hidden not in masked
    assert masked.count("<ENCODED_EMAIL_ADDRESS_1>") == 2  # one value, one placeholder per record
    assert _b64("harmless words only here") in masked
    scanned = len(calls)
    assert scanned >= 2
    record(3)
    assert len(calls) == scanned  # the third record read the cached runs
