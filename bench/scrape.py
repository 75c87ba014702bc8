"""Scrape cost of /metrics with a full set of series.

"Full" is the whole bounded label space a real service can fill: every route of the Sinch
SMS API (each endpoint template with each method it accepts) times every answer of the catalog, plus
`--code-cap` (50) novel codes on every route, plus the `other` endpoint. The series are
made the real way: requests through a sinch-sms-proxy in front of the simulator, which
answers what each request's `X-Sinch-Sim` header asks for. Then /metrics is fetched
repeatedly and timed (wall time of a complete HTTP GET over loopback, as a scraper sees it).
"""

from __future__ import annotations

import http.client
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import procs

#: (path under /xms/v1/{plan}/, method) for every route of the API, ids filled in.
ROUTES: tuple[tuple[str, str], ...] = (
    ("batches", "POST"), ("batches", "GET"), ("batches/dry_run", "POST"),
    ("batches/01FC6662", "GET"), ("batches/01FC6662", "POST"), ("batches/01FC6662", "PUT"),
    ("batches/01FC6662", "DELETE"), ("batches/01FC6662/delivery_feedback", "POST"),
    ("batches/01FC6662/delivery_report", "GET"), ("batches/01FC6662/delivery_report/15551231234", "GET"),
    ("delivery_reports", "GET"), ("groups", "GET"), ("groups", "POST"), ("groups/01GRP", "GET"),
    ("groups/01GRP", "POST"), ("groups/01GRP", "PUT"), ("groups/01GRP", "DELETE"),
    ("groups/01GRP/members", "GET"), ("inbounds", "GET"), ("inbounds/01INB", "GET"), ("unknown/path", "GET"),
)  # fmt: skip
NOVEL_CODES = 50


@dataclass
class ScrapeResult:
    requests: int
    series: int
    size_bytes: int
    times_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)


def _answers() -> list[str]:
    from sinch_sms_exporter import simulator

    return [*simulator.CATALOG_ANSWERS, *(f"novel:novel_code_{i:02d}" for i in range(NOVEL_CODES))]


def _fill(port: int, work: list[tuple[str, str, str]]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path, method, answer in work:
        conn.request(method, f"/xms/v1/BENCHPLAN/{path}", body=b"{}", headers={"X-Sinch-Sim": answer})
        conn.getresponse().read()
    conn.close()
    return len(work)


def _get(port: int) -> tuple[float, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, body


def measure(home: Path, cpus: str | None, scrapes: int = 30) -> ScrapeResult:
    simulator_port = procs.free_port()
    simulator = procs.start_process(
        "simulator",
        [str(procs.BIN / "sinch-sms-simulator"), "--port", str(simulator_port)],
        simulator_port,
        home / "simulator.log",
        None,
    )
    proxy = procs.start_sinch_proxy(f"http://127.0.0.1:{simulator_port}", home, cpus, name="scrape-proxy")
    try:
        work = [(path, method, answer) for path, method in ROUTES for answer in _answers()]
        with ThreadPoolExecutor(4) as pool:
            sent = sum(pool.map(lambda i: _fill(proxy.port, work[i::4]), range(4)))
        _get(proxy.metrics_port)  # discarded: the first scrape pays one-off costs (imports, buffers)
        times, body = [], b""
        for _ in range(scrapes):
            elapsed, body = _get(proxy.metrics_port)
            times.append(elapsed * 1000)
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        return ScrapeResult(sent, series, len(body), times)
    finally:
        proxy.stop()
        simulator.stop()
