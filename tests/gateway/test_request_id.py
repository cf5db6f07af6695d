"""``gateway.request_id``: which client ids are echoed, and the request id in log lines."""

from __future__ import annotations

import logging
import random
import uuid

import pytest

from gateway.request_id import CURRENT, client_id_ok, install_log_field, request_id_of


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        (b"abc-123", True),
        (b"req_01:x.y", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"jane@example.com", False),  # never echo or log an e-mail address
        (b"two words", False),
        (b"4111-1111-1111-1111", False),  # digits only: could be a card or phone number
        (b"12345", False),
        (b"", False),
    ],
)
def test_a_plain_client_id_is_echoed_anything_else_replaced(sent: bytes, echoed: bool) -> None:
    rid = request_id_of({"headers": [(b"host", b"h"), (b"x-request-id", sent)]})
    if echoed:
        assert rid == sent.decode()
    else:
        assert rid.startswith("rg-") and len(rid) == 35


def test_log_lines_name_the_request(caplog: pytest.LogCaptureFixture) -> None:
    install_log_field()
    fmt = logging.Formatter("%(levelname)s %(name)s [%(request_id)s]: %(message)s")  # gateway.cli's format
    log = logging.getLogger("rollguard.test")
    with caplog.at_level(logging.INFO, logger="rollguard.test"):
        log.info("outside")
        token = CURRENT.set("abc-123")
        try:
            log.info("inside")
        finally:
            CURRENT.reset(token)
    lines = [fmt.format(r) for r in caplog.records]
    assert lines == ["INFO rollguard.test [-]: outside", "INFO rollguard.test [abc-123]: inside"]


def _luhn_card(rng: random.Random) -> str:
    body = [int(c) for c in rng.choice(["4", "51", "37", "6011"])]
    body += [rng.randrange(10) for _ in range(15 - len(body))]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(body)))
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


def _personal(rng: random.Random) -> str:
    """One generated piece of personal data, in one of the shapes clients paste into ids."""
    card = _luhn_card(rng)
    ssn = f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    phone = f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    ipv4 = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    grouped = "-".join(card[i : i + 4] for i in range(0, 16, 4))
    return rng.choice([card, grouped, ssn, ssn.replace("-", ""), phone, "+1." + phone, ipv4, "fe80::1"])


def _wrapped(rng: random.Random, value: str) -> bytes:
    prefix = rng.choice(["", "a", "card", "ssn", "user", "req", "tel", "ip", "x_"])
    glue = rng.choice(["", "-", ".", "_", ":"]) if prefix else ""
    suffix = rng.choice(["", "-x", ".end", "_retry2", "z"])
    return f"{prefix}{glue}{value}{suffix}".encode()


@pytest.mark.parametrize("sent", [b"card-4111111111111111", b"ssn.123-45-6789", b"a4111111111111111"])
def test_the_trials_ids_are_replaced(sent: bytes) -> None:
    assert not client_id_ok(sent)
    assert request_id_of({"headers": [(b"x-request-id", sent)]}).startswith("rg-")


def test_generated_ids_holding_personal_data_are_never_echoed() -> None:
    """Any id holding a card, SSN, phone number or IP address (in any of the shapes above, glued to
    any prefix or suffix) is replaced; the digits never reach the response or the audit record."""
    rng = random.Random(7)
    leaked = []
    for _ in range(2000):
        sent = _wrapped(rng, _personal(rng))
        if client_id_ok(sent):
            leaked.append(sent)
    assert leaked == []


def test_generated_opaque_ids_are_echoed() -> None:
    """UUIDs (a digit-only group included), ULIDs, hex trace ids and short counters stay usable."""
    rng = random.Random(11)
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode() for _ in range(500)]
    ids += [b"550e8400-e29b-41d4-a716-446655440000"]  # a digit-only last group
    ids += [
        "01" + "".join(rng.choice(crockford[10:]) + rng.choice(crockford) for _ in range(12))
        for _ in range(200)
    ]
    ids += [f"req-{rng.randint(0, 999_999)}".encode() for _ in range(200)]
    ids = [i if isinstance(i, bytes) else i.encode() for i in ids]
    refused = [i for i in ids if not client_id_ok(i)]
    assert refused == []


def test_a_uuid_of_digits_only_is_echoed() -> None:
    """A canonical UUID with no letter at all (about 1 in 10^6 random v4 UUIDs) is still a UUID:
    the UUID rule comes before the at-least-one-letter rule (found by a user trial)."""
    assert client_id_ok(b"12345678-1234-4234-8234-123456789012")
    assert not client_id_ok(b"1234567812344234823412345678901")  # the same digits, no UUID shape
