"""Reliability, end to end: upstream faults through the real proxy in front of real upstreams.

Every failure is counted once, under its `reason`, never as a response; the client gets a
502 whose body is one plain-text line naming that reason (the proxy's own answer, not
mitmproxy's HTML page); and the proxy keeps serving.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client as httpclient
import json
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import brotli
import pytest
import zstandard

from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.labels import ENDPOINT_TEMPLATES, UPSTREAM_ERROR_TEXTS
from sinch_sms_exporter.sim import simulator
from tests.helpers.certs import CA
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import PLAN
from tests.helpers.processes import (
    Process,
    free_port,
    run_in_threads,
    running,
    start_proxy,
    start_simulator,
    wait_for_port,
    wait_until,
)
from tests.helpers.servers import serve_connections

pytestmark = pytest.mark.e2e


@contextmanager
def multi_proxy(tmp: Path, upstreams: dict[str, str], *args: str) -> Iterator[tuple[Process, dict[str, int]]]:
    """One proxy, one listener per upstream; each upstream's region label is its dict key,
    so every case is counted in its own series (regions map by host:port: upstreams must
    differ in it). Yields the proxy and {region: listen port}."""
    regions = list(upstreams)
    ports = {region: free_port() for region in regions[1:]}
    argv: list[str] = []
    for region in regions[1:]:
        argv += ["--upstream", f"{upstreams[region]}@{ports[region]}"]
    for region in regions:
        argv += ["--region", region]
    with running(start_proxy(tmp, upstreams[regions[0]], *argv, *args, region=None)) as proxy:
        ports[regions[0]] = proxy.ports["listen"]
        for port in ports.values():
            wait_for_port(port, proc=proxy.popen)
        yield proxy, ports


def post(port: int, answer: str = "ok", timeout: float = 30.0) -> tuple[int, bytes]:
    status, _, body = http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": answer}, timeout)
    return status, body


def own_answer(reason: str) -> bytes:
    """The body of the proxy's 502 for an upstream that failed with `reason`."""
    return f"sinch-sms-proxy: {UPSTREAM_ERROR_TEXTS[reason]} (reason={reason})\n".encode()


def errors_by_reason(samples: dict, region: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if name == "sinch_sms_upstream_errors_total" and labels["region"] == region and value:
            found[labels["reason"]] = found.get(labels["reason"], 0) + value
    return found


@contextmanager
def closing_listener() -> Iterator[int]:
    """A TCP server that accepts every connection and closes it at once (mid TLS handshake)."""
    server = serve_connections(lambda conn: conn.close())
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@contextmanager
def black_hole() -> Iterator[int]:
    """A port whose SYNs go unanswered, like a firewalled host: a listener that never accepts,
    its accept queue already full, so the kernel drops further connection attempts."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as server:
        port = server.getsockname()[1]
        fillers = []
        # Connect until a connect goes unanswered: the queue is full (no guess at how long the
        # kernel takes to queue a connection).
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(2.0)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        with socket.socket() as probe:
            probe.settimeout(1.0)
            with pytest.raises(OSError):  # the precondition: a connect here hangs (TimeoutError)
                probe.connect(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


# --- connection failures: refused, DNS, TLS -----------------------------------------------


def test_connection_failures_are_counted_once_under_their_reason(tmp_path, pki) -> None:
    """refused → connect, unresolvable → dns, every kind of bad certificate → tls; 502 each."""
    other_ca = CA(tmp_path / "other-ca", "a CA the proxy does not trust")
    certs = {
        "good": pki.issue("good"),
        "expired": pki.issue("expired", expired=True),
        "wrongname": pki.issue("wrongname", ("sinch.example",)),
        "untrusted": other_ca.issue("untrusted"),
    }
    dead = free_port()
    with ExitStack() as stack:
        sims = {
            name: stack.enter_context(
                running(start_simulator(tmp_path, "--tls-cert", str(c.cert_file), "--tls-key", str(c.key_file)))
            )
            for name, c in certs.items()
        }
        upstreams = {name: f"https://127.0.0.1:{sim.ports['http']}" for name, sim in sims.items()}
        upstreams["refused"] = f"http://127.0.0.1:{dead}"
        upstreams["nxdomain"] = "http://sinch-sms-exporter-test.invalid"  # RFC 2606: never resolves
        upstreams["hangup"] = f"https://127.0.0.1:{stack.enter_context(closing_listener())}"
        proxy, ports = stack.enter_context(multi_proxy(tmp_path, upstreams, "--upstream-ca", str(pki.cert_file)))

        assert post(ports["good"])[0] == 201
        expected = {
            **dict.fromkeys(("expired", "wrongname", "untrusted", "hangup"), "tls"),
            "refused": "connect",
            "nxdomain": "dns",
        }
        for region, reason in expected.items():
            status, headers, body = http(
                "POST", f"http://127.0.0.1:{ports[region]}{PLAN}/batches", b"{}", {"X-Sinch-Sim": "ok"}
            )
            assert (status, body) == (502, own_answer(reason)), region
            assert headers["Content-Type"] == "text/plain; charset=utf-8", region
        samples = scrape(proxy.ports["metrics"])
        for region, reason in expected.items():
            assert errors_by_reason(samples, region) == {reason: 1}, region
            assert total(samples, "sinch_sms_responses_total", region=region) == 0, region
        assert total(samples, "sinch_sms_responses_total", region="good", status="201") == 1

        # The proxy keeps serving: the refused upstream comes up, the same listener answers.
        with running(start_simulator(tmp_path, port=dead)):
            assert post(ports["refused"], "403:blocked_account")[0] == 403
            assert post(ports["good"])[0] == 201
        samples = scrape(proxy.ports["metrics"])
        assert total(samples, "sinch_sms_responses_total", region="refused", code="blocked_account") == 1
        assert total(samples, "sinch_sms_upstream_errors_total") == len(expected)


# --- no answer in time: --upstream-timeout ------------------------------------------------


def test_an_upstream_that_never_answers_is_cut_at_the_timeout(tmp_path) -> None:
    """Silent at every stage (no SYN-ACK, no TLS ServerHello, no HTTP answer): 502 after the
    timeout, reason="timeout" once; the same listener then serves the next request."""
    timeout = 1.0
    with ExitStack() as stack:
        sim, plain = (stack.enter_context(running(start_simulator(tmp_path))) for _ in range(2))
        upstreams = {
            "silent": f"http://127.0.0.1:{sim.ports['http']}",  # answers only what it is asked to
            "blackhole": f"http://127.0.0.1:{stack.enter_context(black_hole())}",
            # TLS to a plain-HTTP server: it waits for a request line that never comes.
            "handshake": f"https://127.0.0.1:{plain.ports['http']}",
        }
        proxy, ports = stack.enter_context(multi_proxy(tmp_path, upstreams, "--upstream-timeout", str(timeout)))
        results = {}
        for region in upstreams:
            started = time.monotonic()
            results[region] = (post(ports[region], "hang", timeout=60), time.monotonic() - started)
        samples = scrape(proxy.ports["metrics"])
        for region, (answer, elapsed) in results.items():
            assert answer == (502, own_answer("timeout")), region
            # the deadline checks every timeout/4 (≥ 50 ms): cut between 1 s and a loaded-machine 15 s
            assert timeout <= elapsed < 15, (region, elapsed)
            assert errors_by_reason(samples, region) == {"timeout": 1}, region
        assert total(samples, "sinch_sms_responses_total") == 0
        assert post(ports["silent"], "403:blocked_account")[0] == 403
        assert total(scrape(proxy.ports["metrics"]), "sinch_sms_responses_total", region="silent", status="403") == 1


# --- cut short: drop, reset, cut mid-body --------------------------------------------------


def test_closed_resets_and_cuts_are_counted_once_as_closed(tmp_path) -> None:
    with (
        running(start_simulator(tmp_path)) as sim,
        running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")) as proxy,
    ):
        port = proxy.ports["listen"]
        # One endpoint per fault, so each is seen in its own series.
        faults = {"drop": "batches", "reset": "groups", "cut": "inbounds", "gzip:chunked:cut": "delivery_reports"}
        for fault, endpoint in faults.items():
            status, _, body = http("POST", f"http://127.0.0.1:{port}{PLAN}/{endpoint}", b"{}", {"X-Sinch-Sim": fault})
            assert (status, body) == (502, own_answer("closed")), fault
            assert http("GET", f"http://127.0.0.1:{port}{PLAN}/{endpoint}")[0] == 200  # and it keeps serving
        samples = scrape(proxy.ports["metrics"])
        for fault, endpoint in faults.items():
            assert total(samples, "sinch_sms_upstream_errors_total", endpoint=endpoint) == 1, fault
            assert total(samples, "sinch_sms_upstream_errors_total", endpoint=endpoint, reason="closed") == 1, fault
            assert total(samples, "sinch_sms_responses_total", endpoint=endpoint) == 1  # the GET after it
        assert total(samples, "sinch_sms_responses_total", method="POST") == 0


# --- slow answers hold up nobody ------------------------------------------------------------


def test_a_slow_answer_does_not_hold_up_other_requests(tmp_path) -> None:
    """The upstream holds one answer until 40 other requests (4 clients x 10) have all been
    answered through the same proxy: were the proxy to wait for the slow answer first, the
    others could never finish (no timing assumption decides it). The held answer then takes
    at least 2 s, and the histogram puts it above 1 s (buckets 1 and 600: no edge near)."""
    upstream = RawUpstream()
    received, release = threading.Event(), threading.Event()
    hold_at_least = 2.0

    def slow(conn: socket.socket) -> None:
        received.set()
        started = time.monotonic()
        release.wait(timeout=120)
        time.sleep(max(0.0, hold_at_least - (time.monotonic() - started)))  # a floor, not a guess
        RawUpstream.reply(conn, raw_response(201, JSON, b'{"id": "01SLOW"}'))

    upstream.answers.update(slow=slow, fast=raw_response(200, JSON, b"{}"))
    try:
        with running(start_proxy(tmp_path, f"http://127.0.0.1:{upstream.port}", "--latency-buckets", "1,600")) as proxy:
            port = proxy.ports["listen"]
            slow_conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=120)
            slow_conn.request("POST", f"{PLAN}/batches/slow", b"{}")
            slow_result: list[int] = []
            waiter = threading.Thread(target=lambda: slow_result.append(slow_conn.getresponse().status))
            waiter.start()
            try:
                assert received.wait(timeout=30)  # the slow request is at the upstream, unanswered
                fast: list[int] = []

                def fast_client() -> None:
                    for _ in range(10):
                        fast.append(http("GET", f"http://127.0.0.1:{port}{PLAN}/batches/fast", timeout=30)[0])

                run_in_threads(fast_client, [()] * 4)
                assert fast == [200] * 40
                assert not slow_result  # all 40 were answered while the slow one was pending
            finally:
                release.set()
                waiter.join(timeout=60)
                slow_conn.close()
            assert slow_result == [201]
            samples = scrape(proxy.ports["metrics"])
    finally:
        upstream.close()
    assert total(samples, "sinch_sms_responses_total") == 41
    slow_labels = dict(region="us", endpoint="batches/{batch_id}", method="POST", status_class="2xx")
    assert total(samples, "sinch_sms_request_duration_seconds_count", **slow_labels) == 1
    assert total(samples, "sinch_sms_request_duration_seconds_bucket", **slow_labels, le="1.0") == 0
    assert total(samples, "sinch_sms_request_duration_seconds_bucket", **slow_labels, le="600.0") == 1


def test_many_slow_answers_are_waited_for_in_parallel(tmp_path) -> None:
    """The upstream answers none of 16 requests until all 16 are in flight at once (a
    barrier): only a proxy that waits for them in parallel gets any answer at all."""
    upstream = RawUpstream()
    all_in_flight = threading.Barrier(16, timeout=60)

    def together(conn: socket.socket) -> None:
        try:
            all_in_flight.wait()
        except threading.BrokenBarrierError:
            return  # closed unanswered: the client gets a 502
        RawUpstream.reply(conn, raw_response(201, JSON, b"{}"))

    upstream.answers["together"] = together
    try:
        with running(start_proxy(tmp_path, f"http://127.0.0.1:{upstream.port}")) as proxy:
            port = proxy.ports["listen"]
            statuses: list[int] = []

            def one() -> None:
                statuses.append(http("POST", f"http://127.0.0.1:{port}{PLAN}/batches/together", b"{}", timeout=90)[0])

            run_in_threads(one, [()] * 16)
            assert statuses == [201] * 16
            assert total(scrape(proxy.ports["metrics"]), "sinch_sms_responses_total", status="201") == 16
    finally:
        upstream.close()


# --- exact accounting under concurrency --------------------------------------------------------

MIXED_ANSWERS: tuple[str, ...] = (
    *simulator.CATALOG_ANSWERS,  # success, every catalog code, 401 404 405 415 429 500 503
    *(f"{encoding}:{info.status}:{info.code}" for encoding in simulator.ENCODINGS for info in catalog.CODES.values()),
    "chunked:403:blocked_account",
    "br:chunked:400:syntax_invalid_json",
    "chunked:ok",
    "gzip:ok",
    "garbage",
    "novel:quota_exceeded",
    "novel:sender_id_blocked",
    "502",
    "504",
)
CLIENTS = 32
REQUESTS_PER_CLIENT = 200
DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress, "deflate": zlib.decompress,
            "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)}  # fmt: skip


def received_code(status: int, headers: httpclient.HTTPMessage, body: bytes) -> str:
    """The code the client got, read from the answer like any client would."""
    if status < 400 or not body:
        return ""
    encoding = headers.get("Content-Encoding")
    if encoding:
        body = DECODERS[encoding](body)
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    return document.get("code", "") if isinstance(document, dict) else ""


def test_every_answer_is_counted_exactly_under_concurrency(tmp_path) -> None:
    """32 clients x 200 mixed requests (every endpoint, methods, statuses, codes, encodings,
    keep-alive and not) at once: the counters equal what the clients received, per
    status and code, per endpoint and method, and in the latency histogram."""
    paths = ["/".join("01FC66621XXXXX" if s.startswith("{") else s for s in t.split("/")) for t in ENDPOINT_TEMPLATES]
    received: Counter[tuple[str, str]] = Counter()
    routes_seen: Counter[tuple[str, str]] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(seed: int, port: int) -> None:
        rng = random.Random(seed)
        conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for i in range(REQUESTS_PER_CLIENT):
                answer = rng.choice(MIXED_ANSWERS)
                path, template = rng.choice(list(zip(paths, ENDPOINT_TEMPLATES, strict=True)))
                method = rng.choice(("GET", "POST", "PUT", "DELETE", "PATCH"))
                headers = {"X-Sinch-Sim": answer, "Authorization": "Bearer test", "Content-Type": "application/json"}
                if i % 10 == 9:
                    headers["Connection"] = "close"
                conn.request(method, f"{PLAN}/{path}", b'{"to": ["+15551231234"]}', headers)
                response = conn.getresponse()
                body = response.read()
                code = received_code(response.status, response.headers, body)
                with lock:
                    received[(str(response.status), code)] += 1
                    routes_seen[(template, method)] += 1
                if response.will_close:
                    conn.close()
                    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
        finally:
            conn.close()

    with (
        running(start_simulator(tmp_path)) as sim,
        running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")) as proxy,
    ):
        run_in_threads(client, [(seed, proxy.ports["listen"]) for seed in range(CLIENTS)])
        assert not failures, failures[:3]
        samples = scrape(proxy.ports["metrics"])

    answers = CLIENTS * REQUESTS_PER_CLIENT
    assert sum(received.values()) == answers
    counted: Counter[tuple[str, str]] = Counter()
    counted_routes: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in samples.items():
        if name == "sinch_sms_responses_total" and value:
            labels = dict(labels)
            counted[(labels["status"], labels["code"])] += int(value)
            counted_routes[(labels["endpoint"], labels["method"])] += int(value)
    assert counted == received
    assert counted_routes == routes_seen
    assert total(samples, "sinch_sms_request_duration_seconds_count") == answers
    assert total(samples, "sinch_sms_upstream_errors_total") == 0
    assert total(samples, "sinch_sms_client_aborts_total") == 0
    # The mix really was mixed: every catalog code and several statuses were seen.
    assert {info.code for info in catalog.CODES.values()} <= {code for _, code in received}
    assert {"200", "201", "404", "429", "500", "503"} <= {status for status, _ in received}


# --- transparency: what the proxy cannot parse still passes byte for byte ----------------------


class RawUpstream:
    """An HTTP/1.1 upstream that answers `/…/{name}` with exactly the bytes registered under
    `name` (status line, headers, body, framing: anything the simulator would not send),
    or runs a function on the socket (to cut or reset mid-body). One answer per connection."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes | Callable[[socket.socket], None]] = {}
        self.server = serve_connections(self._answer)
        self.port = self.server.getsockname()[1]

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += conn.recv(65536)
            answer = self.answers[head.split(b" ", 2)[1].decode().rsplit("/", 1)[-1]]
            if callable(answer):
                answer(conn)
                return
            self.reply(conn, answer)

    @staticmethod
    def reply(conn: socket.socket, answer: bytes) -> None:
        conn.sendall(answer)
        # Close only once the proxy has read everything (closing with unread input would
        # send a TCP RST, which may discard the answer's tail in flight).
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(30)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self.server.close()


def raw_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, chunk: int = 0) -> bytes:
    lines = [b"HTTP/1.1 %d Whatever" % status, *(name + b": " + value for name, value in headers)]
    if chunk:
        lines.append(b"Transfer-Encoding: chunked")
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        payload = framed + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _error(code: str, pad: int = 0) -> bytes:
    return json.dumps({"code": code, "text": "x" * pad}).encode()


def _raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib wrapper: what many servers send as Content-Encoding: deflate."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


_NOISE = random.Random(5).randbytes
JSON = [(b"Content-Type", b"application/json")]
# name: (status, headers, body, chunk size (0: Content-Length), the code it is counted with)
ODD_ANSWERS: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes, int, str]] = {
    "nonutf8": (403, JSON, b'{"code": "blocked_\xff\xfe"}' + bytes(range(256)), 0, ""),
    "utf16": (403, JSON, _error("blocked_account").decode().encode("utf-16"), 0, "blocked_account"),
    "badgzip": (403, [*JSON, (b"Content-Encoding", b"gzip")], b"\x1f\x8b\x08\x00 not gzip at all", 0, ""),
    "gzip": (403, [(b"Content-Encoding", b"gzip")], gzip.compress(_error("unknown_group")), 0, "unknown_group"),
    "rawdeflate": (400, [(b"Content-Encoding", b"deflate")],
                   _raw_deflate(_error("syntax_invalid_json")), 0, "syntax_invalid_json"),
    # 16 MiB of zeros in 16 KiB of gzip: parsed only up to the limit, passed on whole.
    "bomb": (403, [(b"Content-Encoding", b"gzip")], gzip.compress(b"\0" * (16 << 20)), 0, ""),
    "huge403": (403, [(b"Content-Type", b"application/octet-stream")], _NOISE(3 << 20), 0, ""),
    "chunked403": (403, JSON, _error("blocked_account", 300_000), 7_000, ""),  # over the 64 KiB limit
    "chunkedgzip403": (403, [(b"Content-Encoding", b"gzip")], gzip.compress(_NOISE(200_000)), 4_096, ""),
    "smallchunked403": (403, JSON, _error("missing_callback_url"), 7, "missing_callback_url"),
    "huge200": (200, JSON, _NOISE(8 << 20), 0, ""),
    "chunked200": (200, JSON, _NOISE(1 << 20), 10_000, ""),
    "binary500": (500, [(b"Content-Type", b"text/html")], _NOISE(10_000), 0, ""),
    "empty204": (204, [], b"", 0, ""),
    "oddheaders": (403, [(b"X-Dup", b"1"), (b"x-dup", b"2"), (b"cOnTeNt-TyPe", b"application/json"),
                         (b"X-Latin1", b"caf\xe9"), (b"X-Empty", b"")], _error("illegal_number_type"), 0,
                   "illegal_number_type"),
}  # fmt: skip


def test_odd_answers_pass_byte_for_byte_and_count_once(tmp_path) -> None:
    """Non-UTF-8, UTF-16, corrupt gzip, raw deflate, bombs, huge and chunked bodies over the
    body limit, odd headers: the client gets exactly what the upstream sent (status, every
    header in order and case, body bytes still encoded), and each is counted once."""
    upstream = RawUpstream()
    for name, (status, headers, body, chunk, _) in ODD_ANSWERS.items():
        upstream.answers[name] = raw_response(status, headers, body, chunk)
    try:
        with running(start_proxy(tmp_path, f"http://127.0.0.1:{upstream.port}")) as proxy:
            for name, (status, headers, body, chunk, _) in ODD_ANSWERS.items():
                conn = httpclient.HTTPConnection("127.0.0.1", proxy.ports["listen"], timeout=60)
                conn.request("POST", f"{PLAN}/batches/{name}", b"{}")
                response = conn.getresponse()
                got = (response.status, response.getheaders(), response.read())
                conn.close()
                framing = ("Transfer-Encoding", "chunked") if chunk else ("Content-Length", str(len(body)))
                sent = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
                assert got[0] == status, name
                assert got[1] == [*sent, framing, ("Connection", "close")], name
                assert got[2] == body, name
            samples = scrape(proxy.ports["metrics"])
    finally:
        upstream.close()
    for name, (status, _, _, _, code) in ODD_ANSWERS.items():
        labels = dict(endpoint="batches/{batch_id}", status=str(status), code=code)
        assert total(samples, "sinch_sms_responses_total", **labels) >= 1, name
    by_status = Counter(str(status) for status, *_ in ODD_ANSWERS.values())
    by_code = Counter(code for *_, code in ODD_ANSWERS.values())
    for status, count in by_status.items():
        assert total(samples, "sinch_sms_responses_total", status=status) == count
    for code, count in by_code.items():
        assert total(samples, "sinch_sms_responses_total", code=code) == count
    assert total(samples, "sinch_sms_upstream_errors_total") == 0


def _send_then(conn: socket.socket, head: bytes, body: bytes, reset: bool, client_has_headers: threading.Event) -> None:
    conn.sendall(head + body)
    # Cut only once the client holds the answer's headers (it says so): the proxy had passed
    # them on, whatever the machine's load.
    client_has_headers.wait(timeout=60)
    if reset:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_an_answer_cut_mid_body_is_closed_never_a_response(tmp_path) -> None:
    """A big answer whose headers (and some body) already reached the client: the client sees
    the connection end early (it cannot get a 502 any more); counted once as closed."""
    upstream = RawUpstream()
    cases = {"cut200": (200, False), "reset200": (200, True), "cut403": (403, False), "reset403": (403, True)}
    got_headers = {name: threading.Event() for name in cases}
    for name, (status, reset) in cases.items():
        head = raw_response(status, JSON, b"")[: -len(b"Content-Length: 0\r\nConnection: close\r\n\r\n")]
        head += b"Content-Length: %d\r\n\r\n" % (4 << 20)
        upstream.answers[name] = lambda conn, head=head, reset=reset, name=name: _send_then(
            conn, head, _NOISE(1 << 20), reset, got_headers[name]
        )
    try:
        with running(start_proxy(tmp_path, f"http://127.0.0.1:{upstream.port}")) as proxy:
            for name, (status, _) in cases.items():
                conn = httpclient.HTTPConnection("127.0.0.1", proxy.ports["listen"], timeout=60)
                conn.request("GET", f"{PLAN}/batches/{name}")
                response = conn.getresponse()
                got_headers[name].set()  # now the upstream cuts
                assert response.status == status, name  # the headers were already on their way
                with pytest.raises((httpclient.IncompleteRead, ConnectionError)):
                    response.read()
                conn.close()
            samples = wait_until(
                lambda: (
                    (s := scrape(proxy.ports["metrics"]))
                    and total(s, "sinch_sms_upstream_errors_total") >= len(cases)
                    and s
                ),
                what="four upstream errors",
            )
    finally:
        upstream.close()
    assert total(samples, "sinch_sms_upstream_errors_total", reason="closed") == len(cases)
    assert total(samples, "sinch_sms_upstream_errors_total") == len(cases)
    assert total(samples, "sinch_sms_responses_total") == 0


# --- novel codes: the series count stays under the cap ---------------------------------------


def test_hundreds_of_novel_codes_stay_under_the_cap(tmp_path) -> None:
    cap = 50  # the default --code-cap
    novel = [f"novel_code_{i:03d}" for i in range(300)]
    with (
        running(start_simulator(tmp_path)) as sim,
        running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")) as proxy,
    ):
        port = proxy.ports["listen"]
        for code in novel:  # in order: the first `cap` codes are the ones kept
            assert post(port, f"novel:{code}")[0] == 400
        for code in novel[:cap]:  # kept codes stay kept
            assert post(port, f"novel:{code}")[0] == 400
        post(port, "403:blocked_account")  # and catalog codes always pass
        samples = scrape(proxy.ports["metrics"])
    series = {
        dict(labels)["code"]: value for (name, labels), value in samples.items() if name == "sinch_sms_responses_total"
    }
    assert set(series) == {*novel[:cap], "other", "blocked_account"}
    assert all(series[code] == 2 for code in novel[:cap])
    assert series["other"] == len(novel) - cap
    assert total(samples, "sinch_sms_exporter_label_overflow_total", label="code") == len(novel) - cap
    assert total(samples, "sinch_sms_responses_total") == len(novel) + cap + 1


# --- not HTTP at all ---------------------------------------------------------------------------

# name: (what the upstream sends, the status the client sees)
NOT_HTTP: dict[str, tuple[bytes, int]] = {
    "status": (b"HTTP/1.1 2OO closed reset OK\r\nContent-Length: 0\r\n\r\n", 502),  # hint words, quoted
    "banner": (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n", 502),
    "header": (b"HTTP/1.1 403 Forbidden\r\nno colon in this header line\r\nContent-Length: 0\r\n\r\n", 502),
    "length": (b"HTTP/1.1 403 Forbidden\r\nContent-Length: twelve\r\n\r\n", 502),
    "smuggle": (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502),
    # bad chunk framing after the headers went out: the client sees the 403, then the end
    "chunks": (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n", 403),
}


def test_answers_that_are_not_http_are_protocol_errors(tmp_path) -> None:
    upstream = RawUpstream()
    upstream.answers.update({name: raw for name, (raw, _) in NOT_HTTP.items()})
    try:
        with running(start_proxy(tmp_path, f"http://127.0.0.1:{upstream.port}")) as proxy:
            for count, (name, (_, status)) in enumerate(NOT_HTTP.items(), start=1):
                conn = httpclient.HTTPConnection("127.0.0.1", proxy.ports["listen"], timeout=30)
                conn.request("GET", f"{PLAN}/inbounds/{name}")
                response = conn.getresponse()
                assert response.status == status, name
                if status == 502:
                    assert response.read() == own_answer("protocol"), name
                else:
                    with pytest.raises(httpclient.IncompleteRead):
                        response.read()
                conn.close()
                samples = wait_until(
                    lambda count=count: (
                        (s := scrape(proxy.ports["metrics"]))
                        and total(s, "sinch_sms_upstream_errors_total") == count
                        and s
                    ),
                    what=f"the {name} error counted",
                )
                assert errors_by_reason(samples, "us") == {"protocol": count}, name
            assert total(samples, "sinch_sms_responses_total") == 0
            assert http("GET", f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/inbounds/status")[0] == 502
    finally:
        upstream.close()
