"""Reliability, end to end: upstream faults through the real proxy in front of real upstreams.

Every failure is counted once, under its `reason`, never as a response; the client gets a
502 (mitmproxy's answer when no upstream answer exists); and the proxy keeps serving.
"""

from __future__ import annotations

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
    so every case is counted in its own series. Yields the proxy and {region: listen port}."""
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
        proxy, ports = stack.enter_context(multi_proxy(tmp_path, upstreams, "--upstream-ca", str(pki.cert_file)))

        assert post(ports["good"])[0] == 201
        expected = {"expired": "tls", "wrongname": "tls", "untrusted": "tls", "refused": "connect", "nxdomain": "dns"}
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
