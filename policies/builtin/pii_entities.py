"""PII recognisers: e-mail addresses, phone numbers, payment cards, IBANs, US SSNs, IP addresses.

Each recogniser is a cheap regular-expression candidate scan followed by a validator (checksum,
numbering rules, ``ipaddress``, ``phonenumbers``), so text without digits or ``@`` costs a few
microseconds. Entity names follow Presidio (``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``CREDIT_CARD``,
``IBAN_CODE``, ``US_SSN``, ``IP_ADDRESS``).

Look-alike rules (what is deliberately *not* PII):

- E-mail: ``local@domain.tld`` with an alphabetic TLD; not when the "TLD" is a file extension
  (``icon@2x.png``, ``bundle@1x.js``) or there is no dot (``@decorator``, ``foo@bar``).
- A number glued to letters, ``-`` or ``_`` on either side is part of an identifier (git hashes,
  UUIDs, order ids like ``ORD-2024-000123``) and is never a card, SSN or phone number.
- Payment card: 12..19 digits (single spaces or dashes allowed between digits), a known issuer
  prefix for that length, and the Luhn checksum. Not a card when the 32 characters before it name
  an order/invoice/tracking/ticket/reference number or an id (``eventId=``, ``user_id:``) and no
  card word (card, cc, visa, credit, ...).
- Phone number: 7..15 digits. Never a phone: a number shortly after a word naming another kind of
  number (licence, passport, account, order, invoice, tracking, serial, ISBN, ZIP/postal code,
  SSN) unless a phone word is right before it ("To order, call ..."); anything containing a date
  or touching a time (``2024-05-01``, ``12:30``); decimals
  (``0.2207335``); runs of one or two distinct digits (``1000 1000 1000``); numbers inside paths;
  the SSN shape ``AAA-GG-SSSS`` (unless a phone word is next to it); a parenthesis glued to a
  preceding digit (``542(7639)``, a citation).
  Otherwise: a number with a phone word just before or after it (phone, tel, mobile, fax, desk,
  call me at, ... / ``-Office``, ``-Fax``) is accepted on its digit count; a number written with
  ``+`` / ``00`` / ``011`` must be a *possible* number for its country code (``phonenumbers``); any
  other number needs an area code in parentheses or at least three digit groups (``07700 063
  966``, ``415-555-2671``; no one-digit group after the first; or a trunk ``0`` area code and a
  subscriber number, ``0341 8387176``, 9+ digits, not 5-4) and must be a *valid* number in
  one of ``PHONE_REGIONS``, or have the North American shape ``(NXX) NXX-XXXX`` / ``NXX-NXX-XXXX``
  (N = 2-9, one separator style). So bare digit runs (epoch milliseconds ``1714567890123``, order ids),
  street numbers (``17151 2450 Crown St``) and ZIP+4 (``90010-170``) are not phone numbers.
- Hex dumps and number runs: no phone, card, SSN, IBAN or e-mail on a hex-dump line
  (``on_dump_line``: an offset then 4+ hex groups, or 8+ groups of 2 / 6+ of 4); no phone that is a
  space-separated slice of a longer run of same-width hex/number tokens (``_in_number_run``), nor a
  dotted version string of 4+ groups (``4.50.666.791``, ``_version_like``).
- US SSN: ``AAA-GG-SSSS`` or ``AAA GG SSSS`` with area not 000/666/900-999, group not 00, serial
  not 0000; nine bare digits only right after "SSN" / "social security".
- IBAN: country code with its registered length, then the ISO 13616 mod-97 checksum. Only IBANs
  whose account part holds a run of 7+ digits/separators are looked for (every registered format
  has a numeric bank, branch or account code that long, except possibly Saint Lucia's all-
  alphanumeric BBAN).
- IPv4: a dotted quad accepted by ``ipaddress`` (no leading zeros) that is not a version string:
  not preceded by ``v`` / ``version`` / ``ver`` / ``release`` / ``build`` / ``firmware`` /
  ``rev`` / ``patch`` and not part of a longer dotted run (``1.2.3.4.5``). So ``192.168.1.20`` is an
  IP address and ``v1.2.3.4`` / ``version 10.0.0.1`` are not.
- IPv6: accepted by ``ipaddress``, containing a digit and at least two non-empty groups (so C++
  ``a::b`` and times ``12:30:00`` are not addresses).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator

import phonenumbers

from policies.builtin.redaction import Span

EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
SSN = "US_SSN"
IP = "IP_ADDRESS"

ENTITIES: tuple[str, ...] = (EMAIL, PHONE, CARD, IBAN, SSN, IP)
"""Supported entity types, in overlap priority order (earlier wins)."""

_PRIORITY = {kind: n for n, kind in enumerate((CARD, IBAN, SSN, EMAIL, IP, PHONE))}

PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "AU", "NL", "IT", "ES", "BR")
"""Regions a phone number written without a country code may belong to (tried in order)."""

# --- number clusters -----------------------------------------------------------------------
# Every card, SSN, IPv4 address and phone number lies inside a run of at least 7 characters drawn
# from digits, separators and extension markers. Those runs are found with one fast scan and the
# detailed patterns run only inside them, so long texts full of short numbers (code, tables) stay
# cheap. Windows end 2 characters after the run so that end-of-match look-aheads see real text.
_CLUSTER_RE = re.compile(r"[+(\d][\d \-.()x#+et]{6,}")
_Windows = list[tuple[int, int]]


_MERGE_GAP = 64
"""Clusters closer than this many characters share one window: every match of the windowed
patterns consists of cluster characters only and is at least 7 long, so it lies inside one cluster
whatever the windows; merging only saves one ``finditer`` call per cluster and finder (a CSV or a
table has a cluster every few characters), keeping the scan linear with a small constant."""


def _clusters(text: str) -> _Windows:
    n = len(text)
    out: _Windows = []
    for m in _CLUSTER_RE.finditer(text):
        start, end = m.start(), min(n, m.end() + 2)
        if out and start - out[-1][1] <= _MERGE_GAP:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _scan(pattern: re.Pattern[str], text: str, windows: _Windows) -> Iterator[re.Match[str]]:
    """``pattern.finditer`` restricted to ``windows`` (look-behinds still see the text before)."""
    for start, end in windows:
        yield from pattern.finditer(text, start, end)


# A hex dump / byte listing line: an offset (``00000510:``, ``0020300``) then 4+ hexadecimal
# groups of 2, 4, 6 or 8 digits one or two spaces apart (``xxd``, ``od -x``/``-o``, ``hexdump -C``),
# or, without an offset (``od -An``), 8+ groups of 2 or 6+ groups of 4 with a hex letter among
# them (a French phone number is 5 groups of 2; two cards in a row, ``4111 1111 1111 1111 4111
# ...``, are 8 groups of 4 digits and stay cards).
_HEX2, _HEX4 = r"[0-9A-Fa-f]{2}", r"[0-9A-Fa-f]{4}"
_DUMP_LINE_RE = re.compile(
    r"[ \t]*(?:"
    r"(?:[0-9A-Fa-f]{4,16}:|[0-9A-Fa-f]{6,16})"
    r"(?:[ \t]{1,2}(?:[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})){4}"
    rf"|(?:{_HEX2}[ \t]{{1,2}}){{7}}{_HEX2}(?!\S)"
    rf"|(?P<w4>(?:{_HEX4}[ \t]{{1,2}}){{5}}{_HEX4})(?!\S)"
    r")"
)
_HEX_LETTER_RE = re.compile(r"[a-fA-F]")
_HEX_TOKENS_RE = re.compile(r"[0-9A-Fa-f \t]*")


def _is_dump_line(text: str, line_start: int) -> bool:
    m = _DUMP_LINE_RE.match(text, line_start)
    if m is None:
        return False
    w4 = m.group("w4")
    return w4 is None or _HEX_LETTER_RE.search(w4) is not None


def on_dump_line(text: str, pos: int) -> bool:
    """Whether ``pos`` lies on a hex-dump line (``_DUMP_LINE_RE`` matches at the line's start).
    Looks back at most 160 characters for the line start (a dump line's data starts within 80).
    A text that starts mid-line (a cut paste: only hex groups before ``pos``) is judged by its
    second line."""
    nl = text.rfind("\n", max(0, pos - 160), pos)
    if nl < 0 and pos > 160:
        return False
    if _is_dump_line(text, nl + 1):
        return True
    if nl >= 0 or _HEX_TOKENS_RE.fullmatch(text, 0, pos) is None:
        return False
    nxt = text.find("\n", pos, pos + 160)
    return nxt >= 0 and _is_dump_line(text, nxt + 1)


# --- e-mail ---------------------------------------------------------------------------------
_EMAIL_RE = re.compile(
    r"(?<!\w)[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)

# File extensions that look like TLDs in asset names (icon@2x.png); none is a delegated TLD.
_FILE_TLDS = frozenset({
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "css", "js", "jsx", "tsx", "json",
    "yaml", "yml", "txt", "html", "htm", "pdf", "lock", "tgz", "gz", "csv", "xml", "wasm",
})  # fmt: skip


_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")


def _find_emails(text: str) -> Iterable[Span]:
    # One match attempt per "@": an address's local part is the run of local-part characters
    # right before its "@" (at most 64; the look-behind rejects a longer or glued run), so the
    # only possible start is where that run begins. Cost: O(65) per "@", O(len(text)) in all.
    n = len(text)
    at = text.find("@")
    pos = 0
    while at >= 0:
        start, limit = at, max(pos, at - 65)
        while start > limit and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        # A local part starts with a letter or digit: punctuation glued before it (".jane@",
        # "$.jane.roe@" in a JSON path, "...bob@") is not part of the address.
        while start < at and text[start] in "._%+-":
            start += 1
        m = _EMAIL_RE.match(text, start, min(n, at + 256)) if start < at else None
        if m is not None:
            if m.group().rsplit(".", 1)[1].lower() not in _FILE_TLDS and not on_dump_line(text, at):
                yield Span(EMAIL, m.start(), m.end(), _PRIORITY[EMAIL])
            pos = m.end()
        at = text.find("@", max(at + 1, pos))


# --- payment cards --------------------------------------------------------------------------
# Patterns start with a plain character class (then a look-behind on it) so that the regex engine
# can skip ahead quickly through text without digits.
_CARD_RE = re.compile(r"\d(?<![\w\-.]\d)(?:[ \-]?\d){11,18}(?![\w\-]|\.\d)")
_CARD_NEGATIVE = re.compile(
    r"(?i:\b(?:order|invoice|tracking|ticket|ref|reference|shipment|parcel)\b)"
    r"|\b[iI][dD]\b|_[iI][dD]\b|[a-z](?:Id|ID)\b"  # id, ID, user_id, eventId (not "paid", "valid")
)
_CARD_POSITIVE = re.compile(r"(?i)\b(?:card|cc|visa|master ?card|amex|credit|debit|payment|pan)\b")

# (prefix, lengths); sources: ISO/IEC 7812 issuer ranges as published by the networks
# (Visa, Mastercard incl. 2-series, Amex, Discover, Diners, JCB incl. legacy 1800/2131, UnionPay,
# Maestro, Mir, RuPay, Verve, Troy, UATP, InterPayment, Dankort).
_ISSUERS: tuple[tuple[tuple[int, int], range], ...] = (
    ((4, 4), range(13, 20)),  # Visa
    ((51, 55), range(16, 17)),  # Mastercard
    ((2221, 2720), range(16, 17)),  # Mastercard 2-series
    ((34, 34), range(15, 16)),  # Amex
    ((37, 37), range(15, 16)),
    ((6011, 6011), range(16, 20)),  # Discover
    ((644, 649), range(16, 20)),
    ((65, 65), range(16, 20)),
    ((622126, 622925), range(16, 20)),
    ((300, 305), range(14, 20)),  # Diners
    ((3095, 3095), range(14, 20)),
    ((36, 36), range(14, 20)),
    ((38, 39), range(14, 20)),
    ((35, 35), range(16, 20)),  # JCB (3528-3589) and neighbours
    ((1800, 1800), range(15, 16)),  # JCB legacy
    ((2131, 2131), range(15, 16)),
    ((62, 62), range(16, 20)),  # UnionPay
    ((81, 82), range(16, 20)),  # UnionPay / RuPay
    ((50, 50), range(12, 20)),  # Maestro, Verve, Dankort
    ((56, 69), range(12, 20)),  # Maestro / RuPay / InterPayment / InstaPayment
    ((604, 604), range(12, 20)),  # Maestro UK (legacy, written with a leading 0: 0604)
    ((2200, 2204), range(16, 20)),  # Mir
    ((9792, 9792), range(16, 17)),  # Troy
    ((1, 1), range(15, 16)),  # UATP
)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _issuer_ok(digits: str) -> bool:
    d = digits[1:] if digits.startswith("0604") else digits
    n = len(digits)
    for (lo, hi), lengths in _ISSUERS:
        width = len(str(lo))
        if n in lengths and lo <= int(d[:width]) <= hi:
            return True
    return False


def _find_cards(text: str, windows: _Windows) -> Iterable[Span]:
    for m in _scan(_CARD_RE, text, windows):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        if len(digits) < 12 or len(set(digits)) < 2 or not _issuer_ok(digits) or not luhn_ok(digits):
            continue
        if on_dump_line(text, m.start()):
            continue  # bytes of a hex dump
        before = text[max(0, m.start() - 32) : m.start()]
        if _CARD_NEGATIVE.search(before) and not _CARD_POSITIVE.search(before):
            continue
        yield Span(CARD, m.start(), m.end(), _PRIORITY[CARD])


# --- IBAN -----------------------------------------------------------------------------------
# Registered IBAN lengths per country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
# Starts at the check digits (a fast character-class scan), then looks back for the country code.
_IBAN_RE = re.compile(r"\d(?<=(?<!\w)[A-Za-z]{2}\d)\d(?:[ ]?[A-Za-z0-9]){11,30}")


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: registered length for the country and ``mod 97 == 1``."""
    iban = compact.upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_windows(clusters: _Windows) -> _Windows:
    """Number clusters widened to the left by 36 characters (country code, check digits and a bank
    code in letters before the account digits)."""
    out: _Windows = []
    for start, end in clusters:
        start = max(0, start - 36)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _find_ibans(text: str, windows: _Windows) -> Iterable[Span]:
    for m in _scan(_IBAN_RE, text, windows):
        start = m.start() - 2
        length = _IBAN_LENGTHS.get(text[start : m.start()].upper())
        if length is None:
            continue
        # Take exactly `length` alphanumerics (spaces allowed between) from the country code.
        need, end = length, start
        while end < m.end() and need:
            if text[end] != " ":
                need -= 1
            end += 1
        if need or (end < len(text) and text[end].isalnum()):
            continue
        if iban_ok(text[start:end].replace(" ", "")) and not on_dump_line(text, start):
            yield Span(IBAN, start, end, _PRIORITY[IBAN])


# --- US SSN ---------------------------------------------------------------------------------
_SSN_RE = re.compile(r"(\d(?<![\w\-.]\d)\d{2})([- ])(\d{2})\2(\d{4})(?![\w\-]|\.\d)")
_SSN_BARE_RE = re.compile(r"\d(?<!\w\d)\d{8}(?!\w)")
_SSN_WORD_BEFORE = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\W{0,4}$")
_SSN_WORD_ANY = re.compile(r"(?i)ssn|social security")
_SSN_EXAMPLES = frozenset({"078051120", "219099999", "123456789"})


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA numbering rules: area not 000, 666 or 900-999; group not 00; serial not 0000; not a
    well-known advertising/example number."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_EXAMPLES


def _find_ssns(text: str, windows: _Windows) -> Iterable[Span]:
    for m in _scan(_SSN_RE, text, windows):
        if ssn_ok(m.group(1), m.group(3), m.group(4)) and not on_dump_line(text, m.start()):
            yield Span(SSN, m.start(), m.end(), _PRIORITY[SSN])
    if _SSN_WORD_ANY.search(text) is None:
        return
    for m in _scan(_SSN_BARE_RE, text, windows):
        d = m.group()
        if _SSN_WORD_BEFORE.search(text, max(0, m.start() - 30), m.start()) and ssn_ok(d[:3], d[3:5], d[5:]):
            yield Span(SSN, m.start(), m.end(), _PRIORITY[SSN])


# --- IP addresses ---------------------------------------------------------------------------
_IPV4_RE = re.compile(r"\d(?<![\w.\-]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w\-]|\.\d)")
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\bfirmware|\bfw|\brev(?:ision)?|\bpatch)\s*[:=#]?\s*$"
)
_IPV6_RE = re.compile(
    r"(?=[0-9A-Fa-f:])(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)"
)


def _find_ipv4(text: str, windows: _Windows) -> Iterable[Span]:
    for m in _scan(_IPV4_RE, text, windows):
        if _VERSION_BEFORE.search(text, max(0, m.start() - 16), m.start()):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield Span(IP, m.start(), m.end(), _PRIORITY[IP])


_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


def _ipv6_windows(text: str) -> _Windows:
    """Windows around colons that have a hex digit or colon on both sides (an address is at most
    45 characters and its first colon at most 4 characters in)."""
    n = len(text)
    out: _Windows = []
    i = text.find(":")
    while i >= 0:
        if 0 < i < n - 1 and text[i - 1] in _HEX_OR_COLON and text[i + 1] in _HEX_OR_COLON:
            start, end = max(0, i - 5), min(n, i + 48)
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
            i = text.find(":", i + 1)
        else:
            i = text.find(":", i + 1)
    return out


def _find_ipv6(text: str) -> Iterable[Span]:
    if "::" not in text and text.count(":") < 7:
        return
    for m in _scan(_IPV6_RE, text, _ipv6_windows(text)):
        cand = m.group()
        groups = [g for g in cand.split(":") if g]
        if len(groups) < 2 or not any(c.isdigit() for c in cand):
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        yield Span(IP, m.start(), m.end(), _PRIORITY[IP])


# --- phone numbers --------------------------------------------------------------------------
_PHONE_START = (
    r"(?=[+(\d])"  # lets the regex engine skip quickly to candidate characters
    r"(?<![\w+\-./:\\])"
    r"(?=(?:[^\d\n]{0,6}\d){7})"  # 7+ digits ahead, at most 6 other characters apart
)
# Only candidates ``_shaped`` may accept: a ``+``/``0``/``(`` start, a parenthesis, or 3+ digit
# groups (a superset; used when the text holds no phone word at all).
_SHAPED_AHEAD = r"(?=[+(0]|[\d \-.]{0,48}\(|\d+[ \-.()x#et]{1,8}\d+[ \-.()x#et]{1,8}\d)"
_PHONE_BODY = (
    r"(?>"  # atomic: a long digit run is rejected once, not re-split thousands of ways
    r"(?:(?:\+|\b00|\b011)[ \-.]?)?"
    r"(?:\(\d{1,4}\)|\d{1,5})"
    r"(?:[ \-.]?(?:\(\d{1,4}\)|\d{1,5})){0,6}"
    r")"
    r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,5})?"
    r"(?![\w:/\\]|[.\-]\d)"
)
_PHONE_RE = re.compile(_PHONE_START + _PHONE_BODY)
_PHONE_SHAPED_RE = re.compile(_PHONE_START + _SHAPED_AHEAD + _PHONE_BODY)
_PHONE_CONTEXT_BEFORE = re.compile(
    r"(?i)\b(?:phone|tel(?:ephone)?|mobile|cell(?:phone)?|fax|desk|landline|whats ?app|sms|hotline|"
    r"call(?:ed)?(?: me| us| him| her| them)?(?: at| on)?|text (?:me|us)(?: at| on)?|dial|reach (?:me|us)"
    r"(?: at| on)?|contact number|ph|mob)\W{0,6}$"
)
_PHONE_CONTEXT_AFTER = re.compile(r"(?i)^\W{0,3}(?:office|fax|mobile|home|work|cell|phone|tel)\b")
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DATE_RE = re.compile(
    rf"(?<!\d)(?:\d{{4}}[-/.]{_MONTH}[-/.]{_DAY}|{_DAY}[-/]{_DAY}[-/](?:\d{{4}}|\d{{2}}))(?!\d)"
)
_PHONE_GROUP_RE = re.compile(r"\d+")
_NANP_RE = re.compile(r"(?:1[-. ]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([-. ]))[2-9]\d{2}(?(1)\1|[-. ])\d{4}")
_DIGIT_PAREN_RE = re.compile(r"\d\(")
_SSN_SHAPE_RE = re.compile(r"\d{3}-\d{2}-\d{4}")
_DECIMAL_RE = re.compile(r"\d\.\d{5,}|\d{6,}\.\d")


_PHONE_NEGATIVE = re.compile(
    r"(?i)\b(?:licen[cs]e|passport|account|acct|order|invoice|tracking|ticket|serial|isbn|zip|postal|"
    r"postcode|ssn|social security)\b[^\n]{0,24}$"
)


def _trunk_two_groups(groups: list[str]) -> bool:
    """``0341 8387176``, ``030-12345678``: a trunk-prefixed area code and a subscriber number (9+
    digits, not the 5-4 ZIP+4 shape)."""
    return (
        len(groups) == 2
        and groups[0].startswith("0")
        and 2 <= len(groups[0]) <= 5
        and len(groups[0]) + len(groups[1]) >= 9
        and not (len(groups[0]) == 5 and len(groups[1]) == 4)
    )


def _version_like(cand: str) -> bool:
    """``4.50.666.791``, ``15.61.319.1407``: 4+ dot-separated groups, not all two digits wide (the
    French ``06.12.34.56.78``), not a trunk ``0`` area code (``030.1234.567.8``) or the North
    American ``1.NXX.NXX.XXXX``."""
    if cand.strip("0123456789."):
        return False
    groups = cand.split(".")
    first = groups[0]
    trunk = len(first) >= 2 and first[0] == "0"
    nanp = first == "1" and [len(g) for g in groups[1:]] == [3, 3, 4]
    return len(groups) >= 4 and not (trunk or nanp) and any(len(g) != 2 for g in groups)


def _phone_ok(cand: str, text: str, start: int, end: int) -> bool:
    digits = sum(c.isdigit() for c in cand)
    if not 7 <= digits <= 15 or _DATE_RE.search(cand) or _DECIMAL_RE.search(cand):
        return False
    if len({c for c in cand if c.isdigit()}) <= 2:
        return False  # 1000 1000 1000, 0000 000
    if _PHONE_CONTEXT_BEFORE.search(text, max(0, start - 40), start) or _PHONE_CONTEXT_AFTER.search(
        text[end : end + 12]
    ):
        return True  # a phone word right next to it ("To order, call 415 555 2671")
    if _PHONE_NEGATIVE.search(text, max(0, start - 40), start):
        return False  # another kind of number named shortly before it
    if _version_like(cand):
        return False
    if "(" in cand and _DIGIT_PAREN_RE.search(cand):
        return False  # 542(7639): a citation's volume(issue), not an area code
    if _SSN_SHAPE_RE.fullmatch(cand):
        return False  # SSN-shaped (valid ones are US_SSN; invalid ones are not phones either)
    try:
        if cand.startswith(("+", "00", "011")):
            intl = "+" + cand.lstrip("+")[2:] if cand.startswith("00") else cand
            if cand.startswith("011"):
                intl = "+" + cand[3:]
            return phonenumbers.is_possible_number(phonenumbers.parse(intl, None))
        main = re.split(r"[ ]?(?:x|ext|#)", cand, maxsplit=1)[0]
        groups = _PHONE_GROUP_RE.findall(main)
        if "(" not in main and len(groups) < 3 and not _trunk_two_groups(groups):
            return False  # bare runs and two-group numbers (street numbers, ZIP+4): need a phone word
        if any(len(g) < 2 for g in groups[1:]):
            return False  # lists of small numbers (1 5 9 12 15 21)
        if _NANP_RE.fullmatch(main.strip()):
            return True  # (NXX) NXX-XXXX: the North American shape, whether or not assigned
        for region in PHONE_REGIONS:
            if phonenumbers.is_valid_number(phonenumbers.parse(cand, region)):
                return True
    except phonenumbers.NumberParseException:
        return False
    return False


# Any phone word of ``_PHONE_CONTEXT_BEFORE`` / ``_PHONE_CONTEXT_AFTER`` starts with one of these.
# Searched in the lower-cased text without ``\b`` or ``(?i)``: plain literals let the regex engine
# skip ahead fast (5-10x faster on 400 KB); a few extra positions only cost a ``_phone_ok`` call.
_PHONE_WORD_START_RE = re.compile(
    r"ph|tel|mob|cel|fax|desk|land|whats|sms|hot|call|text|dial|reach|contact|office|home|work"
)

_PHONE_WORD_START_CI = re.compile(_PHONE_WORD_START_RE.pattern, re.IGNORECASE)


def _phone_word_starts(text: str) -> list[int]:
    """Sorted start offsets of every possible phone word in ``text`` (a superset)."""
    low = text.lower()
    if len(low) != len(text):  # "İ" lower-cases to two characters: offsets would shift
        return [w.start() for w in _PHONE_WORD_START_CI.finditer(text)]
    return [w.start() for w in _PHONE_WORD_START_RE.finditer(low)]


def _shaped(cand: str, groups: list[str]) -> bool:
    """Whether ``cand`` can be a phone number without a phone word next to it (see ``_phone_ok``):
    an international prefix, an area code in parentheses, 3+ digit groups or a trunk ``0`` area
    code and subscriber number."""
    return (
        cand[0] == "+"
        or cand.startswith(("00", "011"))
        or "(" in cand
        or len(groups) >= 3
        or _trunk_two_groups(groups)
    )


_TOKEN_BEFORE_RE = re.compile(r"(?<!\S)[0-9A-Fa-f]+[ \t]{1,2}\Z")
_TOKEN_AFTER_RE = re.compile(r"[ \t]{1,2}([0-9A-Fa-f]+)(?!\S)")


def _in_number_run(cand: str, text: str, start: int, end: int) -> bool:
    """Whether ``cand`` (digit groups separated by spaces) is a slice of a longer run of
    space-separated number tokens: a hex dump (``xxd``, ``od -x``, ``hexdump``: ``3340 4602 9714``
    between ``062b`` and ``a354``), a byte listing or a table of numbers. True when the token
    right before or after it (same line, 1-2 spaces away) is hexadecimal and as wide as the group
    next to it. A phone number is written whole, so this loses no phone number unless another
    number of the same width is glued to it by spaces."""
    if cand.strip("0123456789 ") or "  " in cand:
        return False  # other separators: dashes, dots, parentheses, a prefix or an extension
    tokens = cand.split()
    before = _TOKEN_BEFORE_RE.search(text, max(0, start - 20), start)
    if before is not None and len(before.group().rstrip()) == len(tokens[0]):
        return True
    after = _TOKEN_AFTER_RE.match(text, end, end + 20)
    return after is not None and len(after.group(1)) == len(tokens[-1])


def _find_phones(text: str, windows: _Windows) -> Iterable[Span]:
    # Cheap structural checks first: a table of numbers yields thousands of candidates per 100 KB
    # and most are bare or two-group numbers that only a phone word nearby could make a phone
    # number. Phone words are located once (``bisect`` per candidate), so the cost per candidate
    # is a few microseconds and the scan stays linear (docs/policies.md, "pii", for numbers).
    words = _phone_word_starts(text)
    for m in _scan(_PHONE_RE if words else _PHONE_SHAPED_RE, text, windows):
        cand = m.group()
        start, end = m.start(), m.end()
        groups = _PHONE_GROUP_RE.findall(cand)
        if not 7 <= sum(map(len, groups)) <= 15:
            continue
        if not _shaped(cand, groups):
            i = bisect.bisect_left(words, start - 46)
            if i == len(words) or words[i] > end + 12:
                continue  # no phone word within reach: _phone_ok would reject it
        if _in_number_run(cand, text, start, end) or on_dump_line(text, start):
            continue
        if _phone_ok(cand, text, start, end):
            yield Span(PHONE, start, end, _PRIORITY[PHONE])


_DIGIT_RE = re.compile(r"\d")

_DIGIT_FINDERS: dict[str, Callable[[str, _Windows], Iterable[Span]]] = {
    PHONE: _find_phones,
    CARD: _find_cards,
    SSN: _find_ssns,
    IP: _find_ipv4,
}


class PiiFinder:
    """Finds the configured PII ``entities`` in a text: ``finder(text) -> list[Span]`` (may
    overlap; resolve with ``redaction.resolve_overlaps``). Raises ``ValueError`` for an unknown
    entity name."""

    def __init__(self, entities: Iterable[str] = ENTITIES) -> None:
        chosen = tuple(entities)
        unknown = sorted(set(chosen) - set(ENTITIES))
        if unknown:
            raise ValueError(f"unknown PII entities {unknown}; supported: {list(ENTITIES)}")
        self.entities = tuple(e for e in ENTITIES if e in chosen)
        self._digit_finders = [_DIGIT_FINDERS[e] for e in self.entities if e in _DIGIT_FINDERS]
        self._email = EMAIL in self.entities
        self._iban = IBAN in self.entities
        self._ipv6 = IP in self.entities

    def __call__(self, text: str) -> list[Span]:
        spans: list[Span] = []
        if self._email and "@" in text:
            spans.extend(_find_emails(text))
        if _DIGIT_RE.search(text) is None:
            return spans
        if self._ipv6:
            spans.extend(_find_ipv6(text))
        windows = _clusters(text)
        if not windows:
            return spans
        if self._iban:
            spans.extend(_find_ibans(text, _iban_windows(windows)))
        for find in self._digit_finders:
            spans.extend(find(text, windows))
        return spans
