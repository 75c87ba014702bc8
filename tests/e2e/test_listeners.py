"""What a real sinch-sms-proxy process listens on: the proxy port(s) and /metrics, over TCP,
nothing else (docs/security.md, "What listens where"). mitmproxy's reverse mode to an https://
upstream also opens a UDP port (HTTP/3) unless the sidecar keeps it TCP only."""

from __future__ import annotations

import pytest
from mitmproxy.proxy import mode_specs

from sinch_sms_exporter.mitm.master import tcp_only
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import PLAN
from tests.helpers.processes import free_port, running, start_proxy
from tests.helpers.sockets import sockets_of


def test_tcp_only_keeps_the_mode_and_its_identity() -> None:
    """mitmproxy finds a server by its mode (a dict key): the TCP-only copy must equal it."""
    both = mode_specs.ProxyMode.parse("reverse:https://eu.sms.api.sinch.com@18080")
    assert both.transport_protocol == "both"
    tcp = tcp_only(both)
    assert tcp.transport_protocol == "tcp" and both.transport_protocol == "both"
    assert tcp == both and hash(tcp) == hash(both) and tcp.full_spec == both.full_spec
    plain = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:9@18081")
    assert tcp_only(plain) is plain
    assert tcp_only(mode_specs.ProxyMode.parse("regular@18082")).transport_protocol == "tcp"


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_the_proxy_process_listens_on_tcp_only(tmp_path, mode: str) -> None:
    """Two https:// upstreams (reverse) or forward mode: the process holds TCP listeners on its
    proxy ports and its metrics port, all on 127.0.0.1, and no UDP socket at all. The
    listeners still proxy: an unreachable upstream is a 502 counted as `connect`."""
    closed = free_port()  # nothing listens here: the upstream refuses
    second = free_port()
    args = ["--upstream", f"https://127.0.0.1:{second}@{free_port()}"] if mode == "reverse" else ["--mode", "forward"]
    with running(start_proxy(tmp_path, f"https://127.0.0.1:{closed}", *args, region=None)) as proxy:
        if mode == "reverse":
            status, _, _ = http("POST", f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/batches", b"{}")
            assert status == 502
            assert total(scrape(proxy.ports["metrics"]), "sinch_sms_upstream_errors_total", reason="connect") == 1
        held = sockets_of(proxy.popen.pid)
    assert [s for s in held if s.protocol == "udp"] == [], held
    listening = {(s.host, s.port) for s in held if s.state == "LISTEN"}
    expected = {("127.0.0.1", proxy.ports["listen"]), ("127.0.0.1", proxy.ports["metrics"])}
    if mode == "reverse":
        expected.add(("127.0.0.1", int(args[1].rsplit("@", 1)[1])))
    assert listening == expected, held
