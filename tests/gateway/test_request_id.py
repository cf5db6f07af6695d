"""``gateway.request_id``: which client ids are echoed, and the request id in log lines."""

from __future__ import annotations

import logging

import pytest

from gateway.request_id import CURRENT, install_log_field, request_id_of


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
