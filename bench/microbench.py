"""In-process micro-benchmark: the addon's own cost per answer, in microseconds.

Flows built with mitmproxy's tflow (as a reverse-mode Sinch answer looks when it reaches the
addon) go through the addon's hooks in mitmproxy's order (request, responseheaders,
response), under mitmproxy's taddons harness. Measured: all three hooks per answer, and the
response hook alone, on the two paths that matter: a 201 success (nothing to parse) and a
403 `{"code":"blocked_account"}` (decode and parse a JSON body). mitmproxy's own cost per
request (parsing, hook dispatch, I/O) is not in these numbers; the load benchmark has it.

    .venv/bin/python -m bench.microbench [--iterations N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from bench import upstream
from sinch_sms_exporter.mitm.addon import SinchSmsExporter

#: The callback listener of the in-process measurement (its mode spec marks callback flows).
CALLBACK_ENTRY = "http://127.0.0.1:9000@8090"

REPEATS = 7


def sinch_flow(status: int, body: str) -> http.HTTPFlow:
    """A completed reverse-mode flow: POST /batches and the answer nginx gives in the load benchmark."""
    flow = tflow.tflow(resp=True)
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:https://us.sms.api.sinch.com")
    flow.request.method = "POST"
    flow.request.host, flow.request.port, flow.request.scheme = "us.sms.api.sinch.com", 443, "https"
    flow.request.path = upstream.SUCCESS_PATH
    response = flow.response
    assert response is not None
    response.status_code = status
    response.headers.clear()
    response.headers["content-type"] = "application/json"
    response.headers["content-length"] = str(len(body))
    response.raw_content = body.encode()
    response.timestamp_end = flow.request.timestamp_start + 0.05
    return flow


def callback_flow() -> http.HTTPFlow:
    """A completed callback-listener flow: Sinch's recipient delivery report, the receiver's 200."""
    flow = tflow.tflow(resp=True)
    flow.client_conn.proxy_mode = ProxyMode.parse(f"reverse:{CALLBACK_ENTRY}")
    flow.request.method = "POST"
    flow.request.host, flow.request.port, flow.request.scheme = "127.0.0.1", 9000, "http"
    flow.request.path = upstream.CALLBACK_PATH
    flow.request.headers["content-type"] = "application/json"
    flow.request.raw_content = upstream.CALLBACK_BODY.encode()
    response = flow.response
    assert response is not None
    response.status_code = 200
    response.headers.clear()
    response.headers["content-length"] = "0"
    response.raw_content = b""
    return flow


@dataclass
class Result:
    name: str
    microseconds: float  # median over REPEATS of the mean per call
    spread: tuple[float, float]  # min, max over REPEATS


def _time(name: str, call: Callable[[], None], iterations: int) -> Result:
    for _ in range(iterations // 10):  # warm up: label children, caches
        call()
    per_call = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(iterations):
            call()
        per_call.append((time.perf_counter() - start) / iterations * 1e6)
    return Result(name, statistics.median(per_call), (min(per_call), max(per_call)))


def measure(iterations: int = 20_000) -> list[Result]:
    addon = SinchSmsExporter()
    results = []
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sinch_metrics_port=0, sinch_callback_upstreams=[CALLBACK_ENTRY])
        for label, status, body in (
            ("201 success", 201, upstream.SUCCESS_BODY),
            ("403 blocked_account", 403, upstream.ERROR_BODY),
        ):
            flow = sinch_flow(status, body)

            def hooks(flow: http.HTTPFlow = flow) -> None:
                addon.request(flow)
                addon.responseheaders(flow)
                addon.response(flow)

            results.append(_time(f"{label}: request+responseheaders+response", hooks, iterations))

            def response_hook(flow: http.HTTPFlow = flow) -> None:
                addon.response(flow)

            results.append(_time(f"{label}: response hook", response_hook, iterations))
        assert addon.metrics is not None
        counted = sum(
            s.value
            for s in next(iter(addon.metrics.responses.collect())).samples
            if s.name == "sinch_sms_responses_total"
        )
        report = callback_flow()

        def callback_hooks(flow: http.HTTPFlow = report) -> None:
            addon.request(flow)
            addon.responseheaders(flow)
            addon.response(flow)

        results.append(
            _time("recipient delivery report callback: request+responseheaders+response", callback_hooks, iterations)
        )
        delivered = sum(
            s.value
            for s in next(iter(addon.metrics.delivery_reports.collect())).samples
            if s.name == "sinch_sms_delivery_reports_total" and s.labels["status"] == "delivered"
        )
    if counted < iterations * REPEATS * 4 or delivered < iterations * REPEATS:
        raise RuntimeError(
            f"the addon counted {counted:g} answers and {delivered:g} delivery reports: "
            "the benchmark did not measure what it claims"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20_000, help="calls per repeat (7 repeats)")
    args = parser.parse_args(argv)
    print(f"{'path':<58} {'µs/answer':>10}  (min-max of {REPEATS} repeats)")
    for result in measure(args.iterations):
        print(f"{result.name:<58} {result.microseconds:>10.2f}  ({result.spread[0]:.2f}-{result.spread[1]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
