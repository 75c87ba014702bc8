"""Security, end to end: no secret or personal data in /metrics or the log; /metrics behind
TLS and basic auth, scraped by a real Prometheus; forward mode decrypts Sinch hosts only."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from helpers import http, running, start_proxy, start_simulator
from sinch_sms_exporter import logredact, routes

pytestmark = pytest.mark.e2e

# --- no secrets in metrics or logs --------------------------------------------------------

TOKEN = "Bearer sk-test-7f3c9a1e5b2d4f60a8c1e9b7d3f5a2c4"
PLAN = "a3f5c8e1d2b4467f9e0c1b2a3d4e5f60"  # service plan ids are 32 hex digits
PHONES = ("+46701234567", "+15557654321", "+4915112345678")
MESSAGE = "Your verification code is 938271, Alice"
IDS = {"batch_id": "01HZSECRETBATCH7Q2K", "group_id": "01HZSECRETGROUPX9M4", "inbound_id": "01HZSECRETINBOUND3V"}
CALLBACK = "https://hooks.example.com/sms/cb?key=cbsecret8821"
CLIENT_REFERENCE = "order-55123-customer-alice"
ANSWERS = (
    "ok",
    "403:blocked_account",
    "gzip:400:syntax_invalid_json",
    "novel:quota_exceeded",
    "garbage",
    "404",
    "429",
    "500",
    "drop",
    "reset",
    "cut",
    "hang",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def needles() -> set[str]:
    """Every secret, in every form it could take on its way into a log or label."""
    found = {
        TOKEN,
        TOKEN.split()[1],
        PLAN,
        MESSAGE,
        "938271",
        CALLBACK,
        "cbsecret8821",
        CLIENT_REFERENCE,
        *IDS.values(),
    }
    for phone in PHONES:
        found |= {phone, phone[1:], urllib.parse.quote(phone, safe=""), json.dumps(phone)}
    return found


def path_of(template: str, phone: str) -> str:
    segments = [IDS.get(s.strip("{}"), phone) if s.startswith("{") else s for s in template.split("/")]
    return f"/xms/v1/{PLAN}/" + "/".join(segments)


def request_body(phone: str) -> bytes:
    return json.dumps(
        {
            "from": PHONES[2],
            "to": [phone, PHONES[1]],
            "body": MESSAGE,
            "callback_url": CALLBACK,
            "client_reference": CLIENT_REFERENCE,
            "members": [phone],
        }
    ).encode()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes as they are (malformed requests), return what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the proxy sees the end of the request, however incomplete
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def echoing_upstream() -> tuple[socket.socket, int]:
    """An upstream that answers with a malformed status line quoting the request's secrets:
    mitmproxy's protocol-error messages would quote it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(f"HTTP/1.1 2OO {PHONES[0]} {TOKEN}\r\nX-Echo: {MESSAGE}\r\n\r\n".encode())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_no_secret_reaches_metrics_or_logs_even_at_debug(tmp_path) -> None:
    """Tokens, phone numbers (in bodies, queries and the delivery_report/{recipient} path),
    the service plan id, ids and message bodies, through every endpoint template with
    success, error and fault answers, plus malformed requests and a malformed upstream
    answer: none of it appears in the /metrics exposition or the proxy's log at debug level."""
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp_path)))
        proxy = stack.enter_context(
            running(
                start_proxy(
                    tmp_path, f"http://127.0.0.1:{sim.ports['http']}", "--log-level", "debug", "--upstream-timeout", "1"
                )
            )
        )
        echo_server, echo_port = echoing_upstream()
        stack.callback(echo_server.close)
        echo_proxy = stack.enter_context(
            running(start_proxy(tmp_path, f"http://127.0.0.1:{echo_port}", "--log-level", "debug"))
        )

        jobs = []
        for t, template in enumerate(routes.ENDPOINT_TEMPLATES):
            for a, answer in enumerate(ANSWERS):
                phone = PHONES[(t + a) % len(PHONES)]
                query = f"?to={urllib.parse.quote(phone)}&client_reference={CLIENT_REFERENCE}"
                headers = {"Authorization": TOKEN, "X-Sinch-Sim": answer, "Content-Type": "application/json"}
                if a % 2:
                    headers["Accept-Encoding"] = "gzip"
                jobs.append((METHODS[(t + a) % len(METHODS)], path_of(template, phone) + query, headers, phone))
        listen = proxy.ports["listen"]

        def send(job) -> int:
            method, path, headers, phone = job
            return http(method, f"http://127.0.0.1:{listen}{path}", request_body(phone), headers, timeout=30)[0]

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(send, jobs))
        assert statuses.count(502) == 4 * len(routes.ENDPOINT_TEMPLATES)  # drop, reset, cut, hang

        # Malformed requests quote themselves in mitmproxy's messages; so would a bad answer.
        secret_line = f"POST {path_of('batches/{batch_id}/delivery_report/{recipient}', PHONES[0])} HTTP/1.1\r\n"
        assert b"400 Bad Request" in raw_exchange(listen, f"{secret_line}Authorization {TOKEN}\r\n\r\n".encode())
        assert b"400 Bad Request" in raw_exchange(
            listen, f"{secret_line[:-11]}\x00 {MESSAGE} HTTP/1.1\r\n\r\n".encode()
        )
        raw_exchange(listen, secret_line.encode())  # and hang up mid-headers
        echo_url = f"http://127.0.0.1:{echo_proxy.ports['listen']}{path_of('batches', PHONES[0])}"
        assert http("POST", echo_url, request_body(PHONES[0]), {"Authorization": TOKEN})[0] == 502

        expositions = []
        for port in (proxy.ports["metrics"], echo_proxy.ports["metrics"]):
            for path, headers in (("/metrics", {}), ("/metrics", {"Accept-Encoding": "gzip"}), ("/", {})):
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    body = response.read()
                    if response.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    expositions.append(body.decode())
    logs = proxy.log() + echo_proxy.log()  # after the proxies stopped: their shutdown included

    assert "sinch_sms_responses_total" in expositions[0] and "sinch_sms_upstream_errors_total" in expositions[0]
    assert "client connect" in logs  # debug level really was on
    for needle in needles():
        for text in expositions:
            assert needle not in text, f"{needle!r} in /metrics"
        assert needle not in logs, f"{needle!r} in the log"


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        ("Invalid header line: b'Authorization Bearer x'", (), "Invalid header line: b'<redacted>'"),
        ('%s: Bad HTTP request line: %r', ("127.0.0.1:5", b"POST /xms/v1/p/x\x00 HTTP/1.1"),
         "127.0.0.1:5: Bad HTTP request line: b'<redacted>'"),
        ("data: %r and %r", (b"it's", b'say "hi"'), "data: b'<redacted>' and b'<redacted>'"),
        ("Unexpected data from server: b'a\\'b' end", (), "Unexpected data from server: b'<redacted>' end"),
        ("client connect", (), "client connect"),
        ("%d flows, %s", (3, "ok"), "3 flows, ok"),
    ],
)  # fmt: skip
def test_log_records_quoting_bytes_are_redacted(message: str, args: tuple, expected: str) -> None:
    record = logging.LogRecord("mitmproxy.proxy.server", logging.INFO, __file__, 1, message, args, None)
    assert logredact.RedactBytes().filter(record) is True  # redacted, never dropped
    assert record.getMessage() == expected
