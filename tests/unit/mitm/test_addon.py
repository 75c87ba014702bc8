"""The addon under mitmproxy's own test harness (taddons/tflow): options, hooks, metrics."""

from __future__ import annotations

import asyncio
import json
import platform
import socket
import threading
from collections.abc import Awaitable, Callable

import bcrypt
import pytest
from mitmproxy import exceptions
from mitmproxy.addons import next_layer, proxyserver
from mitmproxy.flow import Error
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons
from prometheus_client import REGISTRY  # noqa: TID251 - only to prove it stays empty

from sinch_sms_exporter.classify.responses import BodyTap
from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.outcomes import Outcome
from sinch_sms_exporter.exposition import MetricsServer, WebConfig
from sinch_sms_exporter.metrics import Metrics
from sinch_sms_exporter.mitm.addon import SinchSmsExporter
from tests.helpers.client import http
from tests.helpers.flows import sinch_flow
from tests.helpers.processes import free_port


@pytest.fixture
def exporter():
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sinch_metrics_port=0)
        yield addon, tctx


def value(addon: SinchSmsExporter, name: str, **labels: str) -> float:
    return addon.metrics.registry.get_sample_value(name, labels) or 0.0


def answer(addon: SinchSmsExporter, flow) -> None:
    """Run a flow through the hooks in mitmproxy's order for an answered request."""
    addon.request(flow)
    addon.responseheaders(flow)
    addon.response(flow)


def test_every_catalog_answer_is_counted_once_by_status_and_code(exporter) -> None:
    addon, _ = exporter
    for info in catalog.CODES.values():
        answer(addon, sinch_flow(info.status, json.dumps({"code": info.code, "text": info.text}).encode()))
    for info in catalog.STATUSES.values():
        answer(addon, sinch_flow(info.status, b""))
    for info in catalog.CODES.values():
        labels = dict(region="us", endpoint="batches", method="POST", status=str(info.status), code=info.code)
        assert value(addon, "sinch_sms_responses_total", **labels) == 1
    for info in catalog.STATUSES.values():
        labels = dict(region="us", endpoint="batches", method="POST", status=str(info.status), code="")
        assert value(addon, "sinch_sms_responses_total", **labels) == 1
    total = sum(s.value for m in addon.metrics.registry.collect() if m.name == "sinch_sms_responses" for s in m.samples)
    assert total == len(catalog.CODES) + len(catalog.STATUSES)


def test_latency_is_observed_in_seconds_by_status_class(exporter) -> None:
    addon, _ = exporter
    answer(addon, sinch_flow(201, b"{}"))
    labels = dict(region="us", endpoint="batches", method="POST", status_class="2xx")
    assert value(addon, "sinch_sms_request_duration_seconds_count", **labels) == 1
    assert value(addon, "sinch_sms_request_duration_seconds_sum", **labels) == pytest.approx(0.123)
    assert value(addon, "sinch_sms_request_duration_seconds_bucket", **labels, le="0.1") == 0
    assert value(addon, "sinch_sms_request_duration_seconds_bucket", **labels, le="0.15") == 1


def test_hooks_never_change_the_flow(exporter) -> None:
    addon, _ = exporter
    for status, body in [(200, b'{"id": 1}'), (403, b'{"code": "blocked_account"}'), (500, b"\xff\x00bad")]:
        flow = sinch_flow(status, body, {"content-type": "text/plain", "x-custom": "1"})
        before = (flow.request.get_state(), flow.response.status_code, flow.response.headers.fields, body)
        answer(addon, flow)
        after = (flow.request.get_state(), flow.response.status_code, flow.response.headers.fields)
        assert after == before[:3]
        assert flow.response.raw_content == body
        assert flow.error is None and not flow.intercepted


def test_streaming_is_chosen_for_big_and_open_ended_bodies(exporter) -> None:
    addon, _ = exporter
    big = sinch_flow(200, b"", {"content-length": str(10_000_000)}, method="GET")
    addon.responseheaders(big)
    assert big.response.stream is True
    chunked_error = sinch_flow(403, b"", {"transfer-encoding": "chunked"})
    addon.responseheaders(chunked_error)
    assert isinstance(chunked_error.response.stream, BodyTap)
    small = sinch_flow(200, b"{}")
    addon.responseheaders(small)
    assert small.response.stream is False


def test_a_stream_set_by_another_addon_is_left_alone(exporter) -> None:
    addon, _ = exporter
    flow = sinch_flow(403, b"", {"transfer-encoding": "chunked"})

    def other(chunk: bytes) -> bytes:
        return chunk

    flow.response.stream = other
    addon.responseheaders(flow)
    assert flow.response.stream is other


def test_forward_mode_counts_only_sinch_hosts(exporter) -> None:
    addon, _ = exporter
    answer(addon, sinch_flow(200, b"{}", mode="regular", host="eu.sms.api.sinch.com"))
    answer(addon, sinch_flow(200, b"{}", mode="regular", host="api.example.com"))
    answer(addon, sinch_flow(403, b'{"code":"blocked_account"}', mode="regular", host="sms.api.sinch.com.evil"))
    samples = [s for m in addon.metrics.registry.collect() if m.name == "sinch_sms_responses" for s in m.samples]
    assert [(s.labels["region"], s.value) for s in samples] == [("eu", 1.0)]


def test_reverse_mode_counts_every_upstream_and_maps_regions(exporter) -> None:
    addon, tctx = exporter
    tctx.configure(addon, sinch_regions=["127.0.0.1:9000=au", "sim.local=ca"])
    answer(addon, sinch_flow(200, b"{}", host="127.0.0.1", port=9000, mode="reverse:http://127.0.0.1:9000"))
    answer(addon, sinch_flow(200, b"{}", host="sim.local", port=80, mode="reverse:http://sim.local"))
    answer(addon, sinch_flow(200, b"{}", host="10.0.0.1", port=80, mode="reverse:http://10.0.0.1"))
    answer(addon, sinch_flow(200, b"{}", host="eu.sms.api.sinch.com", mode="reverse:https://eu.sms.api.sinch.com"))
    regions = {
        s.labels["region"]
        for m in addon.metrics.registry.collect()
        if m.name == "sinch_sms_responses"
        for s in m.samples
    }
    assert regions == {"au", "ca", "other", "eu"}


def test_upstream_errors_are_counted_by_reason_never_as_responses(exporter) -> None:
    addon, _ = exporter
    refused = sinch_flow(200, b"")
    refused.response = None
    refused.server_conn.timestamp_tcp_setup = None  # never connected
    refused.error = Error("[Errno 111] Connect call failed ('127.0.0.1', 9)")
    addon.request(refused)
    addon.error(refused)

    cut = sinch_flow(200, b"")
    cut.server_conn.timestamp_tcp_setup = 1.0
    cut.error = Error("HTTP/1 protocol error: peer closed connection without sending complete message body")
    addon.error(cut)

    aborted = sinch_flow(200, b"")
    aborted.response = None
    aborted.server_conn.timestamp_tcp_setup = 1.0
    aborted.error = Error("Client disconnected.")
    addon.error(aborted)

    labels = dict(region="us", endpoint="batches", method="POST")
    assert value(addon, "sinch_sms_upstream_errors_total", **labels, reason="connect") == 1
    assert value(addon, "sinch_sms_upstream_errors_total", **labels, reason="closed") == 1
    assert value(addon, "sinch_sms_client_aborts_total", **labels) == 1
    assert not any(m.samples for m in addon.metrics.registry.collect() if m.name == "sinch_sms_responses")


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("sinch_body_limit", 0),
        ("sinch_code_cap", -1),
        ("sinch_metrics_port", 70000),
        ("sinch_upstream_timeout", "-1"),
        ("sinch_upstream_timeout", "soon"),
        ("sinch_upstream_timeout", "inf"),
        ("sinch_shutdown_grace", "-1"),
        ("sinch_shutdown_grace", "a while"),
        ("sinch_latency_buckets", "0.1,abc"),
        ("sinch_latency_buckets", "0.5,0.1"),
        ("sinch_latency_buckets", ""),
        ("sinch_regions", ["no-equals-sign"]),
        ("sinch_regions", ["host=Bad Region"]),
        ("sinch_hosts", "(unclosed"),
        ("sinch_metrics_web_config", "/nonexistent/web.yml"),
    ],
)
def test_configure_rejects_bad_options_with_a_clear_error(exporter, option: str, bad) -> None:
    addon, tctx = exporter
    with pytest.raises(exceptions.OptionsError) as excinfo:
        tctx.configure(addon, **{option: bad})
    assert str(excinfo.value)
    assert "Traceback" not in str(excinfo.value)
    assert option in str(excinfo.value)  # the message says which setting is wrong


def test_every_flow_is_in_flight_from_its_request_headers_to_its_answer_or_error_once(exporter) -> None:
    """What shutdown waits for: each flow counts once from its request headers on (its body
    may still be uploading), however its hooks end (an error after the response, an error
    before any request headers, a flow outside the API)."""
    addon, _ = exporter
    flows = [sinch_flow(201, b"{}") for _ in range(4)]
    for flow in flows:
        addon.requestheaders(flow)
    assert addon.lifecycle.in_flight == 4
    for flow in flows:
        addon.request(flow)
    assert addon.lifecycle.in_flight == 4
    addon.response(flows[0])
    addon.error(flows[0])  # an error after the answer: no second decrement
    addon.error(flows[1])
    flows[2].request.path = "/not/the/api"
    addon.response(flows[2])
    assert addon.lifecycle.in_flight == 1
    addon.error(sinch_flow(502, b""))  # never reached `requestheaders`
    assert addon.lifecycle.in_flight == 1
    addon.response(flows[3])
    assert addon.lifecycle.in_flight == 0
    # `recorded` (what a scrape must have seen before shutdown ends) is every count made
    counted = sum(
        s.value
        for m in addon.metrics.registry.collect()
        if m.name in ("sinch_sms_responses", "sinch_sms_upstream_errors", "sinch_sms_client_aborts")
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert addon.metrics.recorded == counted == 6
    assert addon.lifecycle.health(addon.metrics) is None  # not shutting down


def test_buckets_and_cap_are_options(exporter) -> None:
    addon, tctx = exporter
    tctx.configure(addon, sinch_latency_buckets="0.1,1", sinch_code_cap=1)
    answer(addon, sinch_flow(400, b'{"code": "novel_one"}'))
    answer(addon, sinch_flow(400, b'{"code": "novel_two"}'))
    answer(addon, sinch_flow(400, b'{"code": "novel_two"}'))
    answer(addon, sinch_flow(403, b'{"code": "blocked_account"}'))
    labels = dict(region="us", endpoint="batches", method="POST")
    assert value(addon, "sinch_sms_responses_total", **labels, status="400", code="novel_one") == 1
    assert value(addon, "sinch_sms_responses_total", **labels, status="400", code="other") == 2
    assert value(addon, "sinch_sms_responses_total", **labels, status="403", code="blocked_account") == 1
    assert value(addon, "sinch_sms_exporter_label_overflow_total", label="code") == 2
    buckets = {
        s.labels["le"]
        for m in addon.metrics.registry.collect()
        if m.name == "sinch_sms_request_duration_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert buckets == {"0.1", "1.0", "+Inf"}


def test_metrics_registry_is_private() -> None:
    # Two instances (as after a `-s` script reload) must not collide.
    a, b = Metrics(), Metrics()
    assert a.registry is not b.registry
    # (This used to ask for build_info without its labels, which is None whatever happens.)
    info = {"version": "unknown", "mitmproxy_version": "unknown"}
    assert a.registry.get_sample_value("sinch_sms_exporter_build_info", info) == 1
    a.record_response(Outcome("us", "batches", "POST", 403, "blocked_account", 0.1))
    labels = dict(region="us", endpoint="batches", method="POST", status="403", code="blocked_account")
    assert a.registry.get_sample_value("sinch_sms_responses_total", labels) == 1
    assert b.registry.get_sample_value("sinch_sms_responses_total", labels) is None
    assert not [m for m in REGISTRY.collect() if m.name.startswith("sinch_sms")]


def test_build_info_names_the_versions(exporter) -> None:
    addon, _ = exporter
    (family,) = [m for m in addon.metrics.registry.collect() if m.name == "sinch_sms_exporter_build_info"]
    (sample,) = family.samples
    assert sample.value == 1
    assert set(sample.labels) == {"version", "mitmproxy_version"}  # the contract's labels, no more
    assert sample.labels["mitmproxy_version"].split(".")[0] in ("11", "12")
    # The Python version comes from prometheus_client's own python_info.
    (python_info,) = [m for m in addon.metrics.registry.collect() if m.name == "python_info"]
    assert python_info.samples[0].labels["version"] == platform.python_version()


# --- /healthz reports the proxy's listeners and event loop ------------------------------------


def with_proxy_server(scenario: Callable[..., Awaitable[None]]) -> None:
    """Run `scenario(addon, proxy_server, tctx)` on an event loop with mitmproxy's real
    Proxyserver next to the exporter, as in a running proxy (listeners on loopback)."""

    async def main() -> None:
        proxy_server, addon = proxyserver.Proxyserver(), SinchSmsExporter()
        with taddons.context(proxy_server, next_layer.NextLayer(), addon) as tctx:
            tctx.options.update(listen_host="127.0.0.1", sinch_metrics_port=0)
            try:
                await scenario(addon, proxy_server, tctx)
            finally:
                await proxy_server.servers.update([])

    asyncio.run(main())


def reverse(port: int) -> ProxyMode:
    return ProxyMode.parse(f"reverse:http://127.0.0.1:9@{port}")


def test_health_is_ok_only_while_every_proxy_listener_runs() -> None:
    first, second = free_port(), free_port()

    async def scenario(addon, proxy_server, tctx) -> None:
        assert addon.health() == "the proxy is not running"  # before the running hook
        assert await proxy_server.servers.update([reverse(first), reverse(second)])
        addon.running()
        assert await asyncio.to_thread(addon.health) is None
        # One listener moves to a port another process holds: it does not run.
        with socket.create_server(("127.0.0.1", 0)) as squatter:
            busy = squatter.getsockname()[1]
            assert not await proxy_server.servers.update([reverse(first), reverse(busy)])
            assert await asyncio.to_thread(addon.health) == f"proxy port 127.0.0.1:{busy} is already in use"
        await proxy_server.servers.update([])  # (mitmproxy logs that the failed one cannot stop)
        assert await asyncio.to_thread(addon.health) == "no proxy listener is configured (mode)"
        tctx.options.update(server=False)
        assert await asyncio.to_thread(addon.health) == "the proxy server is off (server=false)"
        addon.done()
        assert addon.health() == "the proxy is not running"

    with_proxy_server(scenario)


def test_health_reports_an_event_loop_that_does_not_answer() -> None:
    """A hook that blocks the event loop stops all proxying; /healthz must say so, although
    the listeners still "run"."""

    async def scenario(addon, proxy_server, tctx) -> None:
        assert await proxy_server.servers.update([reverse(free_port())])
        addon.running()
        addon.health_timeout = 0.2
        answers: list[str | None] = []
        asking = threading.Thread(target=lambda: answers.append(addon.health()))
        asking.start()
        asking.join()  # blocks the event loop (this coroutine never yields) until it answered
        assert answers == ["the proxy's event loop did not answer within 0.2 s"]
        assert await asyncio.to_thread(addon.health) is None  # the loop runs again

    with_proxy_server(scenario)


def test_healthz_answers_503_with_the_reason_and_needs_no_credentials() -> None:
    problems: list[object] = [None]

    def health() -> str | None:
        if isinstance(problems[0], Exception):
            raise problems[0]
        return problems[0]  # type: ignore[return-value]

    # basic auth on /metrics: /healthz stays open (probes carry no credentials)
    users = {"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))}
    server = MetricsServer.start(Metrics().registry, "127.0.0.1", 0, WebConfig(users=users), health)
    try:
        url = server.url.replace("/metrics", "/healthz")
        assert http("GET", server.url)[0] == 401
        assert http("GET", url)[::2] == (200, b"ok\n")
        problems[0] = "proxy port 127.0.0.1:8080 is already in use"
        status, headers, body = http("GET", url)
        assert (status, body) == (503, b"proxy port 127.0.0.1:8080 is already in use\n")
        assert headers["Cache-Control"] == "no-store"
        problems[0] = "two\nlines"  # a reason is one line, whatever the check returns
        assert http("GET", url)[::2] == (503, b"two lines\n")
        problems[0] = RuntimeError("some detail")
        assert http("GET", url)[::2] == (503, b"the health check failed (RuntimeError)\n")
        problems[0] = None
        assert http("GET", url)[::2] == (200, b"ok\n")
    finally:
        server.stop()
    # Without a health check (a MetricsServer on its own): always ok.
    plain = MetricsServer.start(Metrics().registry, "127.0.0.1", 0, None)
    try:
        assert http("GET", plain.url.replace("/metrics", "/healthz"))[::2] == (200, b"ok\n")
    finally:
        plain.stop()
