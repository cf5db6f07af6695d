"""Credential recognisers for the ``secrets`` policy: ``SecretFinder(text) -> list[Span]``.

Kinds (placeholder ``<KIND_n>``): ``AWS_ACCESS_KEY``, ``AWS_SECRET_KEY``, ``GCP_API_KEY``,
``GCP_OAUTH_SECRET``, ``AZURE_STORAGE_KEY``, ``AZURE_SAS_TOKEN``, ``AZURE_CLIENT_SECRET``,
``AZURE_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GITHUB_TOKEN``, ``GITLAB_TOKEN``,
``SLACK_TOKEN``, ``SLACK_WEBHOOK``, ``STRIPE_KEY``, ``HUGGINGFACE_TOKEN``, ``PRIVATE_KEY``, ``JWT``,
``URL_CREDENTIALS``.

Token formats are the vendors' documented prefixes (AWS key id prefixes ``AKIA``/``ASIA``/...,
Google ``AIza``, GitHub ``ghp_``/``github_pat_``, GitLab ``glpat-``, Slack ``xox?-``, Stripe
``sk_live_``, OpenAI ``sk-proj-``, Anthropic ``sk-ant-``, Hugging Face ``hf_``). Values with no
prefix are only taken in context: an AWS secret key is a 40-character base64 string next to
``aws_secret_access_key`` / ``secret`` or within 200 characters after an AWS access key id; an Azure
key is 32 hex characters (or an 84..88 character base64 ``AccountKey``) after an Azure key name.

Look-alike rules: a JWT must have three base64url parts and a header that decodes to a JSON object
with ``"alg"``; a PEM block needs a ``PRIVATE KEY`` header (public keys and certificates are not
secrets) and is taken up to its END line or the end of the text (a key cut by a stream window is
still redacted); in ``scheme://user:pass@host`` only the password is a secret, and placeholders
(``password``, ``pass``, ``secret``, ``changeme``, ``<...>``, ``${...}``, ``{...}``, ``$VAR``,
``***``, ``xxx``, ``your_...``, ``...``) are not.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Iterator

from policies.builtin.redaction import Span

_Rule = tuple[str, re.Pattern[str], int]
"""(kind, pattern, group holding the secret)."""

_RULES: tuple[_Rule, ...] = (
    (
        "AWS_ACCESS_KEY",
        re.compile(r"(?<![A-Z0-9])((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?![A-Z0-9])"),
        1,
    ),
    (
        "AWS_SECRET_KEY",
        re.compile(
            r"(?i)(?:aws_?secret_?(?:access_?)?key|secret_?access_?key|aws.{0,20}secret)['\"]?\s*[:=>]+\s*"
            r"['\"]?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        1,
    ),
    ("GCP_API_KEY", re.compile(r"(?<![\w-])(AIza[0-9A-Za-z_\-]{35})(?![\w-])"), 1),
    ("GCP_OAUTH_SECRET", re.compile(r"(?<![\w-])(GOCSPX-[A-Za-z0-9_\-]{28})(?![\w-])"), 1),
    ("AZURE_STORAGE_KEY", re.compile(r"(?i)(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{40,}={0,2})"), 1),
    ("AZURE_SAS_TOKEN", re.compile(r"(?i)[?&]sig=([A-Za-z0-9%+/]{30,}={0,2}(?:%3D){0,2})"), 1),
    (
        "AZURE_CLIENT_SECRET",
        re.compile(r"(?<![\w~.-])([A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34})(?![\w~.-])"),
        1,
    ),
    (
        "AZURE_API_KEY",
        re.compile(
            r"(?i)(?:azure[\w.\-]{0,30}|ocp-apim-subscription-key)['\"]?\s*[:=]\s*['\"]?"
            r"([0-9a-f]{32})(?![0-9a-z])"
        ),
        1,
    ),
    ("ANTHROPIC_API_KEY", re.compile(r"(?<![\w-])(sk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_\-]{32,})"), 1),
    (
        "OPENAI_API_KEY",
        re.compile(
            r"(?<![\w-])(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
            r"|sk-[A-Za-z0-9]{48})(?![\w-])"
        ),
        1,
    ),
    (
        "GITHUB_TOKEN",
        re.compile(r"(?<![\w-])(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
        1,
    ),
    (
        "GITLAB_TOKEN",
        re.compile(r"(?<![\w-])(gl(?:pat|ptt|dt|rt|cbt|soat|ffct|imt|agent)-[A-Za-z0-9_\-]{20,})"),
        1,
    ),
    ("SLACK_TOKEN", re.compile(r"(?<![\w-])(xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{10,})"), 1),
    (
        "SLACK_WEBHOOK",
        re.compile(r"(https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,})"),
        1,
    ),
    (
        "STRIPE_KEY",
        re.compile(r"(?<![\w-])((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})"),
        1,
    ),
    ("HUGGINGFACE_TOKEN", re.compile(r"(?<![\w-])(hf_[A-Za-z0-9]{34,})(?![\w-])"), 1),
    (
        "PRIVATE_KEY",
        re.compile(
            r"(-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z))"
        ),
        1,
    ),
)

KINDS: tuple[str, ...] = (*(r[0] for r in _RULES), "JWT", "URL_CREDENTIALS")
"""Every kind the finder can report."""

_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}")
_BASE64_40 = re.compile(r"(?<![A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")

_JWT_RE = re.compile(r"(?<![\w-])(eyJ[A-Za-z0-9_\-]{8,})\.([A-Za-z0-9_\-]{2,})\.([A-Za-z0-9_\-]*)(?![\w-])")

_URL_CRED_RE = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://([^\s:/@?#]{1,128}):([^\s/@?#]{1,256})@[\w\-.\[\]]"
)
_PLACEHOLDER_PASSWORDS = frozenset(
    {"password", "pass", "passwd", "pwd", "secret", "changeme", "pw", "token", "redacted", "example"}
)
_PLACEHOLDER_RE = re.compile(r"(?i)^(?:[<{\[%$].*|.*[>}\]]|\*+|x+|\.+|your[_\-]?.*|.*password.*|<\w+_\d+>)$")

# Literal triggers per kind: a rule's regex runs only when one of its literals occurs in the text
# (in the lower-cased text when the flag is True). Substring tests are C-speed, so text without any
# trigger costs a few microseconds.
_TRIGGERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "AWS_ACCESS_KEY": (("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), False),
    "AWS_SECRET_KEY": (("secret",), True),
    "GCP_API_KEY": (("AIza",), False),
    "GCP_OAUTH_SECRET": (("GOCSPX-",), False),
    "AZURE_STORAGE_KEY": (("accountkey=", "sharedaccesskey="), True),
    "AZURE_SAS_TOKEN": (("sig=",), True),
    "AZURE_CLIENT_SECRET": (("Q~",), False),
    "AZURE_API_KEY": (("azure", "ocp-apim-subscription-key"), True),
    "ANTHROPIC_API_KEY": (("sk-ant-",), False),
    "OPENAI_API_KEY": (("sk-",), False),
    "GITHUB_TOKEN": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), False),
    "GITLAB_TOKEN": (
        ("glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glsoat-", "glffct-", "glimt-", "glagent-"),
        False,
    ),
    "SLACK_TOKEN": (("xox", "xapp-"), False),
    "SLACK_WEBHOOK": (("hooks.slack.com",), False),
    "STRIPE_KEY": (("_live_", "_test_", "whsec_"), False),
    "HUGGINGFACE_TOKEN": (("hf_",), False),
    "PRIVATE_KEY": (("PRIVATE KEY",), False),
}


BEFORE = 64
"""Characters a match may start before its trigger literal (``aws_`` before ``secret``, the scheme
before ``://``, ``-----BEGIN RSA `` before ``PRIVATE KEY``)."""
AFTER = 1024
"""Characters searched after a trigger; a match that reaches the end of its window is searched
again without the limit (long PEM blocks, long tokens)."""


def trigger_windows(
    haystack: str, literals: Iterable[str], n: int | None = None, slack: int = 0
) -> list[tuple[int, int]]:
    """Merged ``[start, end)`` windows of ``BEFORE``/``AFTER`` characters around every occurrence
    of any of ``literals`` in ``haystack``; empty when none occurs. ``n``: length of the text the
    windows are for (default ``len(haystack)``); ``slack``: how far an offset in ``haystack`` may
    lie past the same place in that text (windows start that much earlier)."""
    hits: list[int] = []
    for lit in literals:
        i = haystack.find(lit)
        while i >= 0:
            hits.append(i)
            i = haystack.find(lit, i + 1)
    if not hits:
        return []
    hits.sort()
    if n is None:
        n = len(haystack)
    out: list[tuple[int, int]] = []
    for i in hits:
        start, end = max(0, i - BEFORE - slack), min(n, i + AFTER)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def scan(pattern: re.Pattern[str], text: str, windows: list[tuple[int, int]]) -> Iterator[re.Match[str]]:
    """``pattern.finditer`` inside each window. A match touching a window's end (where the window
    cut may have shortened it, or ``\\Z`` matched early) is matched again on the whole text.

    Like one ``finditer``, matches never overlap: the search resumes after the end of the last
    match, so a re-match that runs far past its window (an unterminated PEM block) is not found
    again from every later window. Each re-match covers text no later search reads again, so the
    total cost stays linear in ``len(text)``."""
    n = len(text)
    resume = 0
    for start, end in windows:
        start = max(start, resume)
        if start >= end:
            continue
        for m in pattern.finditer(text, start, end):
            if m.end() >= end and end < n:
                full = pattern.match(text, m.start())
                if full is not None:
                    m = full
            resume = max(resume, m.end())
            yield m
            if m.end() > end:
                break


def _jwt_ok(header_b64: str) -> bool:
    """The JWT header decodes (base64url) to a JSON object with an ``alg`` member."""
    try:
        raw = base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and "alg" in header


def _is_placeholder(password: str) -> bool:
    return password.lower() in _PLACEHOLDER_PASSWORDS or _PLACEHOLDER_RE.match(password) is not None


_COMMON = " etaoinsrhldcu-.mfpgwy,TIAb:v/k'xjqz"
"""Characters from the most to the least frequent in English prose; other capitals count as rarer
than all of them, and any other character (digits, ``_=~$``) as rarer still."""


def _rarity(c: str) -> int:
    i = _COMMON.find(c)
    if i >= 0:
        return len(_COMMON) - i
    i = _COMMON.find(c.lower())
    return (len(_COMMON) - i - 100) if c.isupper() and i >= 0 else -200


def _key_groups(literals: set[tuple[str, bool]]) -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
    """``(key, lower, literals)``: the trigger literals grouped by their rarest character and by
    the text they are searched in; ``key`` is the longest prefix two or more literals of a group
    share, if any, else that character (a literal can only occur where its key does)."""
    groups: dict[tuple[str, bool], list[str]] = {}
    for lit, low in sorted(literals):
        groups.setdefault((min(lit, key=_rarity), low), []).append(lit)
    out = []
    for (key, low), lits in sorted(groups.items()):
        same = [len(set(chars)) == 1 for chars in zip(*lits, strict=False)]  # up to the shortest
        prefix = lits[0][: same.index(False) if False in same else len(same)]
        out.append((prefix if len(lits) > 1 and len(prefix) > 1 else key, low, tuple(lits)))
    return tuple(out)


class SecretFinder:
    """Finds credentials of the configured ``kinds`` (default: all of ``KINDS``). Raises
    ``ValueError`` for an unknown kind."""

    def __init__(self, kinds: Iterable[str] = KINDS) -> None:
        chosen = tuple(kinds)
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown secret kinds {unknown}; supported: {list(KINDS)}")
        self.kinds = tuple(k for k in KINDS if k in chosen)
        self._rules = [r for r in _RULES if r[0] in self.kinds]
        self._extra: list[Callable[[str], Iterable[Span]]] = []
        if "AWS_SECRET_KEY" in self.kinds:
            self._extra.append(_aws_secret_after_key_id)
        if "JWT" in self.kinds:
            self._extra.append(_find_jwts)
        if "URL_CREDENTIALS" in self.kinds:
            self._extra.append(_find_url_credentials)
        # every literal a rule's windows or an extra recogniser start from, with where it is
        # searched (``lower`` or ``text``)
        literals: set[tuple[str, bool]] = set()
        for kind in self.kinds:
            if kind in _TRIGGERS:
                found, low = _TRIGGERS[kind]
                literals |= {(lit, low) for lit in found}
        if "AWS_SECRET_KEY" in self.kinds:
            literals |= {(lit, False) for lit in _TRIGGERS["AWS_ACCESS_KEY"][0]}
        if "JWT" in self.kinds:
            literals.add(("eyJ", False))
        if "URL_CREDENTIALS" in self.kinds:
            literals.add(("://", False))
        self._keys = _key_groups(literals)

    def _triggered(self, text: str, lower: str) -> bool:
        """Whether any trigger literal of the configured kinds occurs (in ``lower`` for the
        case-insensitive ones). Each literal is only searched when its rarest character occurs
        (a one-character search is a ``memchr``): most texts hold no trigger, and this answers
        them for about a third of the cost of searching every literal."""
        for key, low, literals in self._keys:
            hay = lower if low else text
            if key in hay and any(lit in hay for lit in literals):
                return True
        return False

    def __call__(self, text: str) -> list[Span]:
        lower = text.lower()
        if not self._triggered(text, lower):
            return []  # no rule has a window and no extra recogniser has a trigger
        # Lower-casing may lengthen the text (U+0130 -> "i" + combining dot); offsets found in
        # ``lower`` are then up to ``slack`` characters past the same place in ``text``.
        slack = abs(len(lower) - len(text))
        spans: list[Span] = []
        for kind, pattern, group in self._rules:
            literals, in_lower = _TRIGGERS[kind]
            if in_lower:
                windows = trigger_windows(lower, literals, len(text), slack)
            else:
                windows = trigger_windows(text, literals)
            for m in scan(pattern, text, windows):
                spans.append(Span(kind, m.start(group), m.end(group), 10))
        for find in self._extra:
            spans.extend(find(text))
        return spans


def _aws_secret_after_key_id(text: str) -> Iterable[Span]:
    for key in scan(_AWS_KEY_ID, text, trigger_windows(text, _TRIGGERS["AWS_ACCESS_KEY"][0])):
        window_end = min(len(text), key.end() + 200)
        for m in _BASE64_40.finditer(text, key.end(), window_end):
            value = m.group(1)
            # Real secret keys mix cases and digits; a 40-letter word run is not one.
            if (
                any(c.isdigit() for c in value)
                and any(c.isupper() for c in value)
                and any(c.islower() for c in value)
            ):
                yield Span("AWS_SECRET_KEY", m.start(1), m.end(1), 10)
                break


def _find_jwts(text: str) -> Iterable[Span]:
    for m in scan(_JWT_RE, text, trigger_windows(text, ("eyJ",))):
        if _jwt_ok(m.group(1)):
            yield Span("JWT", m.start(), m.end(), 10)


def _find_url_credentials(text: str) -> Iterable[Span]:
    for m in scan(_URL_CRED_RE, text, trigger_windows(text, ("://",))):
        if not _is_placeholder(m.group(2)):
            yield Span("URL_CREDENTIALS", m.start(2), m.end(2), 20)
