"""The proxy's own 502: one plain-text line per reason (mitm/answers.py). End to end in
test_reliability (every reason through the real proxy) and test_sdk_clients (what the SDK sees)."""

from __future__ import annotations

import pytest
from mitmproxy.net.http import http1

from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.mitm import answers


@pytest.mark.parametrize("reason", labels.UPSTREAM_ERROR_REASONS)
def test_every_reason_has_one_short_plain_line(reason: str) -> None:
    raw = answers.render(502, reason)
    head, _, body = raw.partition(b"\r\n\r\n")
    response = http1.read_response_head(head.split(b"\r\n"))
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(body)
    assert body == f"{answers.text_of(reason)}\n".encode()
    assert body.startswith(b"sinch-sms-proxy: ") and body.endswith(f"(reason={reason})\n".encode())
    assert body.count(b"\n") == 1 and len(body) < 100


def test_error_codes_of_either_mitmproxy_version_give_the_status() -> None:
    class ErrorCode:  # mitmproxy's later ErrorCode enum members have this method
        def http_status_code(self) -> int | None:
            return 502

    assert answers._status_of(502) == 502
    assert answers._status_of(ErrorCode()) == 502
    assert answers._status_of("502") is None


def test_pending_reasons_are_bounded() -> None:
    for i in range(answers._MAX_PENDING + 10):
        answers.note(f"client-{i}", "connect")
    assert len(answers._pending) == answers._MAX_PENDING
    for i in range(answers._MAX_PENDING + 10):
        answers.forget(f"client-{i}")
    assert not answers._pending
