"""A client's bad trace headers make the OpenTelemetry API log a warning per request: rollguard
lets one through a minute per message, with the count held back, and without the header values."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.propagate import extract

from gateway import client_header_log
from gateway.client_header_log import CLIENT_HEADER_LOGGERS, PLACEHOLDER, OncePerInterval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock()
    limiter = OncePerInterval(60.0, clock)
    loggers = [logging.getLogger(name) for name in CLIENT_HEADER_LOGGERS]
    # a gateway built earlier in this process installed its own limit (real clock) on these
    # loggers: set it aside, so only this test's clock decides (restored afterwards)
    installed = {lg.name: [f for f in lg.filters if isinstance(f, OncePerInterval)] for lg in loggers}
    for lg in loggers:
        for f in installed[lg.name]:
            lg.removeFilter(f)
        lg.addFilter(limiter)
    try:
        yield clock
    finally:
        for lg in loggers:
            lg.removeFilter(limiter)
            for f in installed[lg.name]:
                lg.addFilter(f)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")]


def test_an_oversized_traceparent_logs_once_a_minute_with_a_count(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    header = {"traceparent": "00-" + "a" * 600}
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            extract(header)
        assert len(_warnings(caplog)) == 1
        clock.now += 59.0
        extract(header)
        assert len(_warnings(caplog)) == 1
        clock.now += 1.5
        extract(header)
    lines = _warnings(caplog)
    assert len(lines) == 2
    assert "exceeded the maximum length" in lines[1] and "50 more like it since the last one" in lines[1]


def test_header_values_never_reach_the_log(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with caplog.at_level(logging.WARNING):
        extract({"traceparent": valid, "tracestate": "k=jane.doe@example.com@x,=bad"})
    lines = _warnings(caplog)
    assert lines, "the API logs a warning for a bad tracestate"
    assert all("jane.doe" not in line for line in lines)
    assert any(PLACEHOLDER in line for line in lines)


def test_install_puts_the_limit_on_the_client_header_loggers() -> None:
    client_header_log.install()
    client_header_log.install()
    for name in CLIENT_HEADER_LOGGERS:
        limits = [f for f in logging.getLogger(name).filters if isinstance(f, OncePerInterval)]
        assert len(limits) == 1
