"""Upstream failures show at the default log level: one line per kind of failure (reason),
then at most one count per reason and window; never a path, query, token or body."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from sinch_sms_exporter.mitm.upstream_log import UpstreamFailureLog
from tests.helpers.client import http, scrape, total
from tests.helpers.processes import free_port, running, start_proxy

FIRST = re.compile(r"upstream failure: (\w+) \(")
SUMMARY = re.compile(r"upstream failure: (\w+), (\d+) more in the last \d+ s")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]


def test_first_failure_at_once_then_one_count_per_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    log = UpstreamFailureLog(logging.getLogger("test.upstream"), every=60, clock=clock)
    for _ in range(5):
        log.failed("dns", "eu.sms.api.sinch.com", 443, "eu")
    log.failed("connect", "us.sms.api.sinch.com", 443, "us")
    assert [FIRST.match(line).group(1) for line in _lines(caplog)] == ["dns", "connect"]
    assert "eu.sms.api.sinch.com:443 (region eu)" in _lines(caplog)[0]
    clock.now += 30
    log.failed("dns", "eu.sms.api.sinch.com", 443, "eu")
    assert len(_lines(caplog)) == 2  # still the first window
    clock.now += 31
    log.failed("dns", "eu.sms.api.sinch.com", 443, "eu")  # the window is over: its count
    assert SUMMARY.match(_lines(caplog)[-1]).groups() == ("dns", "6")
    clock.now += 120
    log.failed("dns", "eu.sms.api.sinch.com", 443, "eu")  # a quiet window later: a first line again
    assert FIRST.match(_lines(caplog)[-1]).group(1) == "dns" and len(_lines(caplog)) == 4


def test_a_window_with_repeats_ends_with_its_count_on_the_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    """The count is logged when the window ends, not only at the next failure."""
    caplog.set_level(logging.INFO)

    async def burst() -> None:
        log = UpstreamFailureLog(logging.getLogger("test.upstream"), every=0.3)
        for _ in range(4):
            log.failed("timeout", "127.0.0.1", 9, "us")
        await asyncio.sleep(0.6)
        log.close()

    asyncio.run(burst())
    lines = _lines(caplog)
    assert len(lines) == 2, lines
    assert FIRST.match(lines[0]).group(1) == "timeout"
    assert SUMMARY.match(lines[1]).groups() == ("timeout", "3")


SECRETS = ("SECRETPLAN42", "+46700000001", "46700000001", "Bearer-TOKEN-xyz", "message-body-text")


@pytest.mark.e2e
def test_an_unreachable_upstream_is_one_info_line_per_reason_without_secrets(tmp_path) -> None:
    """The real proxy at its default log level, two unreachable upstreams (a refused port, a
    name that does not resolve), eight requests each with secrets in path, query, header and
    body: each reason is logged once (the window is a minute), with its upstream, and no
    secret; every request is still counted."""
    refused = f"https://127.0.0.1:{free_port()}"
    second_port = free_port()
    proxy = start_proxy(tmp_path, refused, "--upstream", f"https://nowhere.invalid@{second_port}", region=None)
    with running(proxy):
        for port in (proxy.ports["listen"], second_port):
            for _ in range(8):
                url = f"http://127.0.0.1:{port}/xms/v1/SECRETPLAN42/batches/01ABC/delivery_report/+46700000001?to=46700000001"
                status, _, _ = http(
                    "POST", url, b'{"body": "message-body-text"}', {"Authorization": "Bearer Bearer-TOKEN-xyz"}
                )
                assert status == 502
        samples = scrape(proxy.ports["metrics"])
    assert total(samples, "sinch_sms_upstream_errors_total", reason="connect") == 8
    assert total(samples, "sinch_sms_upstream_errors_total", reason="dns") == 8
    log = proxy.log()
    failures = [line for line in log.splitlines() if "upstream failure" in line]
    assert sorted(FIRST.search(line).group(1) for line in failures) == ["connect", "dns"], log
    assert any("127.0.0.1:" in line and "connect" in line for line in failures), failures
    assert any("nowhere.invalid:443" in line and "dns" in line for line in failures), failures
    assert [s for s in SECRETS if s in log] == [], log
    assert "/xms" not in log and "delivery_report" not in log, log
