"""Callbacks end to end: a real sinch-sms-proxy process with a callback listener in front of a
real receiver; the test acting as Sinch, then the simulator sending real (signed, retried)
callbacks; a receiver that is down; bytes and headers checked byte for byte."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from sinch_sms_exporter import mitmproxy_script
from sinch_sms_exporter.sim.callbacks import sign
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import BIN, PLAN, PROXY
from tests.helpers.processes import Process, free_port, running, start, start_simulator, wait_for_port, wait_until
from tests.helpers.servers import serve_connections

pytestmark = pytest.mark.e2e

SECRET = "SMSWebhooksSecret"
# Sinch's own test vector (the SDKs' tests): this body, nonce and timestamp sign to SIGNATURE.
SIGNED_BODY = (
    b'{"at":"2025-01-13T09:22:40.914Z","batch_id":"01JHFFHQ0P99JPPNQPJDV7JTBP","client_reference":"a client '
    b'reference","code":0,"operator_status_at":"2025-01-13T09:22:00Z","recipient":"33662162466","status":'
    b'"Delivered","type":"recipient_delivery_report_sms"}'
)
NONCE, TIMESTAMP, SIGNATURE = "01JHFFHWYY7HSS4FWTMDTQEK8V", "1736760161", "ZoHei66PPN/kZjw7hFVfGhJOnml3iGNCMWoyQVcE5o0="


class CapturingReceiver:
    """A callback receiver that records every request's raw bytes and answers what `answer`
    says for it (status, extra head lines, body): the service Sinch calls."""

    def __init__(self, answer: Callable[[bytes, int], tuple[int, bytes, bytes]] | None = None) -> None:
        self.answer = answer or (lambda body, n: (200, b"", b""))
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.lock = threading.Lock()
        self.server = serve_connections(self._connection)
        self.port = self.server.getsockname()[1]

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with self.lock:
                    self.requests.append((head, body))
                    n = len(self.requests)
                status, extra, answer = self.answer(body, n)
                conn.sendall(
                    b"HTTP/1.1 %d Whatever\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(answer), extra, answer)
                )

    def close(self) -> None:
        self.server.close()


def start_callback_proxy(tmp: Path, receivers: list[str], *args: str) -> Process:
    """sinch-sms-proxy with an API listener (towards a closed port: unused here) and one
    callback listener per receiver URL, on loopback."""
    listen, metrics = free_port(), free_port()
    callback_ports = [free_port() for _ in receivers]
    argv = [PROXY, "--upstream", f"http://127.0.0.1:{free_port()}", "--region", "us", "--listen-port", str(listen),
            "--metrics-port", str(metrics), "--metrics-host", "127.0.0.1", "--confdir", str(tmp / "mitmproxy"),
            "--callback-listen-host", "127.0.0.1", *args]  # fmt: skip
    for url, port in zip(receivers, callback_ports, strict=True):
        argv += ["--callback-upstream", f"{url}@{port}"]
    proc = start(argv, tmp / f"proxy-{listen}.log")
    for port in (listen, metrics, *callback_ports):
        wait_for_port(port, proc=proc.popen)
    proc.ports.update(listen=listen, metrics=metrics, **{f"callback{i}": p for i, p in enumerate(callback_ports)})
    return proc


@contextlib.contextmanager
def receiver(answer: Callable[[bytes, int], tuple[int, bytes, bytes]] | None = None) -> Iterator[CapturingReceiver]:
    r = CapturingReceiver(answer)
    try:
        yield r
    finally:
        r.close()


def post_raw(port: int, head_lines: list[bytes], body: bytes, path: bytes = b"/sinch/callbacks?token=t0k") -> bytes:
    """Send one callback exactly as these bytes (Sinch's header order and case); return the answer."""
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: hooks.example.com", *head_lines]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def recipient_report(status: str, code: int, n: int = 0) -> bytes:
    report = {"type": "recipient_delivery_report_sms", "batch_id": f"01BATCH{n:05d}", "recipient": "+46701234567"}
    return json.dumps({**report, "code": code, "status": status, "at": "2026-12-02T06:00:00.000Z"}).encode()


def test_the_sdk_test_vector_signs_as_sinch() -> None:
    """sim.callbacks.sign reproduces Sinch's own test vector (and the SDK agrees, if installed)."""
    assert sign(SECRET, SIGNED_BODY, NONCE, TIMESTAMP) == SIGNATURE
    sdk = pytest.importorskip("sinch.domains.authentication.sinch_events.v1.authentication_validation")
    headers = {"X-Sinch-Webhook-Signature": SIGNATURE, "X-Sinch-Webhook-Signature-Nonce": NONCE,
               "X-Sinch-Webhook-Signature-Timestamp": TIMESTAMP}  # fmt: skip
    assert sdk.validate_sinch_event_signature_with_nonce(SECRET, headers, SIGNED_BODY.decode())


def test_callbacks_pass_byte_for_byte_and_the_answer_comes_back_unchanged(tmp_path) -> None:
    """Sinch's signed callback reaches the receiver with the same body and headers (names,
    case, order; only Host names the receiver, as in any reverse proxy), the receiver's
    status, headers and body reach Sinch unchanged, and the counts follow the contract."""
    answer_body = b'{"accepted": true, "note": "\xc3\xa9"}'

    def answer(body: bytes, n: int) -> tuple[int, bytes, bytes]:
        return (202, b"X-Receiver: yes\r\nContent-Type: application/json; charset=utf-8\r\n", answer_body)

    with ExitStack() as stack:
        r = stack.enter_context(receiver(answer))
        proxy = stack.enter_context(running(start_callback_proxy(tmp_path, [f"http://127.0.0.1:{r.port}"])))
        lines = [
            b"Content-Type: application/json",
            b"x-sinch-webhook-signature-nonce: " + NONCE.encode(),
            b"X-Sinch-Webhook-Signature-Timestamp: " + TIMESTAMP.encode(),
            b"X-SINCH-WEBHOOK-SIGNATURE-ALGORITHM: HmacSHA256",
            b"X-Sinch-Webhook-Signature: " + SIGNATURE.encode(),
            b"User-Agent: Sinch-Callbacks/1.0",
        ]
        raw = post_raw(proxy.ports["callback0"], lines, SIGNED_BODY)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202 Whatever\r\n")
        assert b"\r\nX-Receiver: yes\r\n" in head and b"charset=utf-8" in head
        assert body == answer_body
        (got_head, got_body), *_ = r.requests
        assert got_body == SIGNED_BODY
        got_lines = got_head.split(b"\r\n")
        assert got_lines[0] == b"POST /sinch/callbacks?token=t0k HTTP/1.1"
        assert got_lines[1] == b"Host: 127.0.0.1:%d" % r.port
        assert got_lines[2:] == [*lines, b"Content-Length: %d" % len(SIGNED_BODY), b"Connection: close"]
        assert sign(SECRET, got_body, NONCE, TIMESTAMP) == SIGNATURE  # the receiver's check passes
        samples = scrape(proxy.ports["metrics"])
    assert total(samples, "sinch_sms_callbacks_total", type="recipient_delivery_report_sms", status="202") == 1
    assert total(samples, "sinch_sms_delivery_reports_total", status="delivered", code="0") == 1
    assert total(samples, "sinch_sms_responses_total") == 0


MMS_STATUSES = [{"code": 0, "status": "Delivered", "count": 40}, {"code": 417, "status": "Failed", "count": 2}]


def test_counts_follow_the_receivers_answers(tmp_path) -> None:
    """Each callback counts once by the receiver's status; its messages only on 2xx; batch
    reports add their counts; inbound messages, unknown types and garbage count as callbacks."""
    plan = [
        (recipient_report("Delivered", 0, 1), 200),
        (recipient_report("Failed", 402, 2), 200),
        (recipient_report("Failed", 402, 3), 500),  # Sinch will retry it: not a delivery yet
        (recipient_report("Failed", 402, 3), 429),
        (recipient_report("Expired", 0, 4), 400),  # Sinch drops it: never delivered to the service
        (json.dumps({"type": "delivery_report_mms", "statuses": MMS_STATUSES}).encode(), 200),
        (json.dumps({"type": "mo_text", "from": "+46701234567", "body": "STOP"}).encode(), 200),
        (b'{"type": "sms_event_v2"}', 200),
        (b"\x00\xffnot json", 200),
    ]  # fmt: skip
    statuses = iter([status for _, status in plan])
    with ExitStack() as stack:
        r = stack.enter_context(receiver(lambda body, n: (next(statuses), b"", b"")))
        proxy = stack.enter_context(running(start_callback_proxy(tmp_path, [f"http://127.0.0.1:{r.port}"])))
        for body, status in plan:
            answer = post_raw(proxy.ports["callback0"], [b"Content-Type: application/json"], body)
            assert answer.startswith(b"HTTP/1.1 %d " % status)
        samples = scrape(proxy.ports["metrics"])
    count = lambda name, **labels: total(samples, name, **labels)  # noqa: E731
    assert count("sinch_sms_callbacks_total") == len(plan)
    assert count("sinch_sms_callbacks_total", type="recipient_delivery_report_sms", status="200") == 2
    assert count("sinch_sms_callbacks_total", type="recipient_delivery_report_sms", status="500") == 1
    assert count("sinch_sms_callbacks_total", type="recipient_delivery_report_sms", status="429") == 1
    assert count("sinch_sms_callbacks_total", type="recipient_delivery_report_sms", status="400") == 1
    assert count("sinch_sms_callbacks_total", type="mo_text", status="200") == 1
    assert count("sinch_sms_callbacks_total", type="other", status="200") == 1
    assert count("sinch_sms_callbacks_total", type="", status="200") == 1
    assert count("sinch_sms_delivery_reports_total", status="delivered", code="0") == 41
    assert count("sinch_sms_delivery_reports_total", type="recipient_delivery_report_sms", status="failed") == 1
    assert count("sinch_sms_delivery_reports_total", type="delivery_report_mms", status="failed", code="417") == 2
    assert count("sinch_sms_delivery_reports_total", status="expired") == 0
    assert count("sinch_sms_callback_errors_total") == 0
    assert count("sinch_sms_responses_total") == 0


def test_a_receiver_that_is_down_gets_sinch_a_502_and_one_error(tmp_path) -> None:
    """No receiver: Sinch gets a 502 (which it retries), one sinch_sms_callback_errors_total
    and no callback or delivery is counted; the API side counts nothing either."""
    with running(start_callback_proxy(tmp_path, [f"http://127.0.0.1:{free_port()}"])) as proxy:
        answer = post_raw(
            proxy.ports["callback0"], [b"Content-Type: application/json"], recipient_report("Delivered", 0)
        )
        samples = scrape(proxy.ports["metrics"])
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert total(samples, "sinch_sms_callback_errors_total") == 1
    assert total(samples, "sinch_sms_callback_errors_total", reason="connect") == 1
    assert total(samples, "sinch_sms_callbacks_total") == 0
    assert total(samples, "sinch_sms_delivery_reports_total") == 0
    assert total(samples, "sinch_sms_upstream_errors_total") == 0


def test_api_answers_are_not_callbacks(tmp_path) -> None:
    """The API listener's answers are counted as API answers only, with a callback listener
    beside it; polling a delivery report is a snapshot, not a delivery report."""
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp_path)))
        r = stack.enter_context(receiver())
        proxy = stack.enter_context(running(start_callback_proxy(tmp_path, [f"http://127.0.0.1:{r.port}"])))
        proxy.stop()
        listen, metrics = free_port(), free_port()
        argv = [PROXY, "--upstream", f"http://127.0.0.1:{sim.ports['http']}", "--region", "us",
                "--listen-port", str(listen), "--metrics-port", str(metrics), "--metrics-host", "127.0.0.1",
                "--confdir", str(tmp_path / "mitmproxy"), "--callback-listen-host", "127.0.0.1",
                "--callback-upstream", f"http://127.0.0.1:{r.port}@{free_port()}"]  # fmt: skip
        proxy = stack.enter_context(running(start(argv, tmp_path / "proxy-api.log")))
        wait_for_port(listen, proc=proxy.popen)
        wait_for_port(metrics, proc=proxy.popen)
        base = f"http://127.0.0.1:{listen}{PLAN}"
        assert http("GET", f"{base}/batches/01BATCH/delivery_report?type=full")[0] == 200
        assert http("GET", f"{base}/batches/01BATCH/delivery_report/+46701234567")[0] == 200
        samples = scrape(metrics)
    assert total(samples, "sinch_sms_responses_total", endpoint="batches/{batch_id}/delivery_report") == 1
    assert total(samples, "sinch_sms_responses_total") == 2
    assert total(samples, "sinch_sms_callbacks_total") == 0
    assert total(samples, "sinch_sms_delivery_reports_total") == 0


# --- the simulator calls back like Sinch -------------------------------------------------


def simulator_stats(sim: Process) -> Counter:
    return Counter(json.loads(http("GET", f"http://127.0.0.1:{sim.ports['http']}/_sim/callbacks")[2]))


def send_batch(proxy_port: int, callback_port: int, report: str, to: list[str], forced: str | None = None) -> dict:
    headers = {"Authorization": "Bearer t0k3n", "Content-Type": "application/json"}
    if forced:
        headers["X-Sinch-Sim-Delivery"] = forced
    url = f"http://127.0.0.1:{callback_port}/sinch/callbacks"
    body = {"from": "12345", "to": to, "body": "Your code is 123456", "delivery_report": report,
            "callback_url": url, "client_reference": "ref-1"}  # fmt: skip
    status, _, answer = http("POST", f"http://127.0.0.1:{proxy_port}{PLAN}/batches", json.dumps(body).encode(), headers)
    assert status == 201
    return json.loads(answer)


@contextlib.contextmanager
def sim_and_proxy(tmp: Path, receiver_url: str, *sim_args: str) -> Iterator[tuple[Process, Process]]:
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp, "--time-scale", "0.01", *sim_args)))
        listen, metrics, callback = free_port(), free_port(), free_port()
        argv = [PROXY, "--upstream", f"http://127.0.0.1:{sim.ports['http']}", "--region", "us",
                "--listen-port", str(listen), "--metrics-port", str(metrics), "--metrics-host", "127.0.0.1",
                "--confdir", str(tmp / "mitmproxy"), "--callback-listen-host", "127.0.0.1",
                "--callback-upstream", f"{receiver_url}@{callback}"]  # fmt: skip
        proxy = stack.enter_context(running(start(argv, tmp / "proxy.log")))
        for port in (listen, metrics, callback):
            wait_for_port(port, proc=proxy.popen)
        proxy.ports.update(listen=listen, metrics=metrics, callback=callback)
        yield sim, proxy


def test_the_simulator_calls_back_for_every_delivery_report_setting(tmp_path) -> None:
    """summary and full: one batch report when all are final; per_recipient: Queued,
    Dispatched and final per recipient; per_recipient_final: one per recipient; none: nothing.
    Signed with the secret: the receiver (Sinch's SDK check when installed) accepts them all."""
    port = free_port()
    with ExitStack() as stack:
        argv = [str(BIN / "sinch-sms-receiver"), "--port", str(port), "--fail-share", "0", "--secret", SECRET]
        rcv = stack.enter_context(running(start(argv, tmp_path / "receiver.log")))
        wait_for_port(port, proc=rcv.popen)
        sim, proxy = stack.enter_context(
            sim_and_proxy(tmp_path, f"http://127.0.0.1:{port}", "--callback-secret", SECRET)
        )
        phones = ["+46701234567", "+15557654321", "+4915112345678"]
        listen, callback = proxy.ports["listen"], proxy.ports["callback"]
        created = send_batch(listen, callback, "summary", phones[:2], "Delivered")
        assert created["id"].startswith("01") and len(created["id"]) == 26
        send_batch(listen, callback, "full", phones, "Failed:402")
        send_batch(listen, callback, "per_recipient", phones, "Expired")
        send_batch(listen, callback, "per_recipient_final", phones[:2], "Rejected:408")
        send_batch(listen, callback, "none", phones, "Delivered")
        callbacks = 1 + 1 + 3 * 3 + 2
        wait_until(lambda: simulator_stats(sim)["delivered"] >= callbacks, what="every callback delivered")
        samples = scrape(proxy.ports["metrics"])
        stats = json.loads(http("GET", f"http://127.0.0.1:{port}/stats")[2])
        assert simulator_stats(sim)["delivered"] == callbacks
    assert stats["signature_ok"] == callbacks and "signature_bad" not in stats
    count = lambda **labels: total(samples, "sinch_sms_delivery_reports_total", **labels)  # noqa: E731
    assert count(type="delivery_report_sms", status="delivered", code="0") == 2
    assert count(type="delivery_report_sms", status="failed", code="402") == 3
    assert count(type="recipient_delivery_report_sms", status="queued", code="400") == 3
    assert count(type="recipient_delivery_report_sms", status="dispatched", code="401") == 3
    assert count(type="recipient_delivery_report_sms", status="expired", code="0") == 3
    assert count(type="recipient_delivery_report_sms", status="rejected", code="408") == 2
    assert count() == 2 + 3 + 9 + 2
    assert total(samples, "sinch_sms_callbacks_total", status="200") == callbacks
    assert total(samples, "sinch_sms_responses_total", endpoint="batches", status="201") == 5


def test_retried_callbacks_count_once_and_rejected_ones_never(tmp_path) -> None:
    """The receiver answers each report's first attempt 500, its second 429, then 200: the
    simulator retries on Sinch's schedule and each message counts once. A receiver answering
    400 gets no retry and its reports never count as deliveries."""
    attempts: Counter[bytes] = Counter()

    def flaky(body: bytes, n: int) -> tuple[int, bytes, bytes]:
        key = hashlib.sha256(body).digest()
        attempts[key] += 1
        return ({1: 500, 2: 429}.get(attempts[key], 200), b"", b"")

    with ExitStack() as stack:
        r = stack.enter_context(receiver(flaky))
        sim, proxy = stack.enter_context(sim_and_proxy(tmp_path, f"http://127.0.0.1:{r.port}"))
        send_batch(
            proxy.ports["listen"],
            proxy.ports["callback"],
            "per_recipient_final",
            [f"+1555765432{i}" for i in range(4)],
            "Failed",
        )
        wait_until(lambda: simulator_stats(sim)["delivered"] >= 4, what="retried callbacks delivered")
        samples = scrape(proxy.ports["metrics"])
        stats = simulator_stats(sim)
    assert stats["retries"] == 8 and stats["500"] == 4 and stats["429"] == 4 and stats["200"] == 4
    assert total(samples, "sinch_sms_callbacks_total", status="500") == 4
    assert total(samples, "sinch_sms_callbacks_total", status="429") == 4
    assert total(samples, "sinch_sms_delivery_reports_total", status="failed") == 4

    with ExitStack() as stack:
        r = stack.enter_context(receiver(lambda body, n: (400, b"", b"")))
        sim, proxy = stack.enter_context(sim_and_proxy(tmp_path / "second", f"http://127.0.0.1:{r.port}"))
        send_batch(proxy.ports["listen"], proxy.ports["callback"], "per_recipient_final", ["+15557654321"] * 3)
        wait_until(lambda: simulator_stats(sim)["dropped"] >= 3, what="rejected callbacks dropped")
        samples = scrape(proxy.ports["metrics"])
        stats = simulator_stats(sim)
    assert stats["dropped"] == 3 and stats["retries"] == 0 and len(r.requests) == 3
    assert total(samples, "sinch_sms_callbacks_total", status="400") == 3
    assert total(samples, "sinch_sms_delivery_reports_total") == 0


def test_inbound_messages_on_demand(tmp_path) -> None:
    with ExitStack() as stack:
        r = stack.enter_context(receiver())
        sim, proxy = stack.enter_context(sim_and_proxy(tmp_path, f"http://127.0.0.1:{r.port}"))
        url = f"http://127.0.0.1:{proxy.ports['callback']}/inbound"
        for kind, n in (("mo_text", 3), ("mo_binary", 1), ("mo_media", 2)):
            order = json.dumps({"url": url, "type": kind, "count": n}).encode()
            assert http("POST", f"http://127.0.0.1:{sim.ports['http']}/_sim/inbound", order)[0] == 202
        wait_until(lambda: len(r.requests) >= 6, what="inbound messages")
        samples = scrape(proxy.ports["metrics"])
    assert [total(samples, "sinch_sms_callbacks_total", type=k, status="200") for k in INBOUND] == [3, 1, 2]
    assert total(samples, "sinch_sms_delivery_reports_total") == 0


INBOUND = ("mo_text", "mo_binary", "mo_media")


def test_mitmdump_users_set_one_option(tmp_path) -> None:
    """`mitmdump -s` with `--set sinch_callback_upstreams=URL@[HOST:]PORT`: the addon adds
    the callback listener itself and counts what passes."""
    with ExitStack() as stack:
        r = stack.enter_context(receiver())
        listen, metrics, callback = free_port(), free_port(), free_port()
        argv = [str(BIN / "mitmdump"), "-q", "-s", mitmproxy_script.__file__, "--mode",
                f"reverse:http://127.0.0.1:{free_port()}@{listen}", "--set", f"confdir={tmp_path / 'mitmproxy'}",
                "--set", f"sinch_metrics_port={metrics}", "--set", "sinch_metrics_host=127.0.0.1",
                "--set", f"sinch_callback_upstreams=http://127.0.0.1:{r.port}@127.0.0.1:{callback}"]  # fmt: skip
        mitmdump = stack.enter_context(running(start(argv, tmp_path / "mitmdump.log")))
        for port in (listen, metrics, callback):
            wait_for_port(port, proc=mitmdump.popen)
        assert post_raw(callback, [], recipient_report("Delivered", 0)).startswith(b"HTTP/1.1 200 ")
        samples = scrape(metrics)
    assert total(samples, "sinch_sms_delivery_reports_total", status="delivered") == 1
    assert total(samples, "sinch_sms_responses_total") == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--callback-upstream", "http://127.0.0.1:9000/cb"], {}, "give the base URL only"),
        (
            ["--callback-upstream", "ftp://127.0.0.1:9000"],
            {},
            "--callback-upstream ftp://127.0.0.1:9000: expected http(s)://HOST[:PORT]",
        ),
        (["--callback-upstream", "http://a@8090", "--callback-upstream", "http://b@8090"], {}, "share a listen port"),
        (["--callback-upstream", "http://a@PORT"], {}, "share port"),
        (["--delivery-code-cap", "-1"], {}, "--delivery-code-cap -1: must be 0 or more"),
        (
            [],
            {"SINCH_PROXY_CALLBACK_UPSTREAM": "nonsense"},
            "SINCH_PROXY_CALLBACK_UPSTREAM=nonsense: expected http(s)://HOST[:PORT]",
        ),
    ],
)
def test_bad_callback_settings_are_one_line_and_exit_2(tmp_path, args: list[str], env: dict, message: str) -> None:
    listen = free_port()
    args = [a.replace("PORT", str(listen)) for a in args]
    argv = [PROXY, "--listen-port", str(listen), "--metrics-port", "0", "--confdir", str(tmp_path), *args]
    proc = start(argv, tmp_path / "bad.log", env)
    assert proc.popen.wait(30) == 2
    lines = proc.log().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sinch-sms-proxy: error: ") and message in lines[0], lines
