"""Reliability, end to end: upstream faults through the real proxy in front of real upstreams.

Every failure is counted once, under its `reason`, never as a response; the client gets a
502 (mitmproxy's answer when no upstream answer exists); and the proxy keeps serving.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from certs import CA
from helpers import (
    PLAN,
    Process,
    free_port,
    http,
    running,
    scrape,
    start_proxy,
    start_simulator,
    total,
    wait_for_port,
)

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
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
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
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
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


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> CA:
    return CA(tmp_path_factory.mktemp("pki"))


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
        for region in expected:
            status, body = post(ports[region])
            assert status == 502, (region, body)
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
            results[region] = (post(ports[region], "hang", timeout=60)[0], time.monotonic() - started)
        samples = scrape(proxy.ports["metrics"])
        for region, (status, elapsed) in results.items():
            assert status == 502, region
            # the deadline checks every timeout/4 (≥ 50 ms): cut between 1 s and a loaded-machine 15 s
            assert timeout <= elapsed < 15, (region, elapsed)
            assert errors_by_reason(samples, region) == {"timeout": 1}, region
        assert total(samples, "sinch_sms_responses_total") == 0
        assert post(ports["silent"], "403:blocked_account")[0] == 403
        assert total(scrape(proxy.ports["metrics"]), "sinch_sms_responses_total", region="silent", status="403") == 1
