"""Scrape cost of /metrics with a full set of series.

"Full" is the whole bounded label space a real service can fill: every route of the Sinch
SMS API (each endpoint template with each method it accepts, plus the `other` endpoint) times
- every answer of the catalog, plus `--code-cap` (50) novel codes: sinch_sms_responses_total
  and the latency histogram;
- every upstream failure that can be provoked on loopback: sinch_sms_upstream_errors_total
  with reason `closed` (the simulator's `drop`, `reset`, `cut`), `protocol` (`malformed`),
  `timeout` (`hang`, cut by a 1 s --upstream-timeout), `connect` (a second listener of the
  proxy whose upstream is a closed port) and `tls` (a third one in front of an HTTPS simulator
  whose self-signed certificate the proxy does not trust). Only `dns` (a resolver timeout on
  some machines) and `other` (no known cause) are left out: 2 of 7 reasons per route;
- a client that gives up before the upstream answers: sinch_sms_client_aborts_total.
The series are made the real way: requests through a sinch-sms-proxy in front of the
simulator, which answers what each request's `X-Sinch-Sim` header asks for; the phase checks
that every series it claims is there. Then /metrics is fetched repeatedly and timed (wall
time of a complete HTTP GET over loopback, as a scraper sees it).

    .venv/bin/python -m bench.scrape
"""

from __future__ import annotations

import datetime
import http.client
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import procs

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
#: Simulator faults on the main listener → the reason the proxy must count them under.
FAULTS: dict[str, str] = {"drop": "closed", "reset": "closed", "cut": "closed", "malformed": "protocol",
                          "hang": "timeout"}  # fmt: skip
#: Reasons made by the extra listeners (upstream: a closed port; an untrusted HTTPS simulator).
LISTENER_REASONS = ("connect", "tls")
UPSTREAM_TIMEOUT = 1.0
#: A client that leaves before the (hanging) upstream answers: well before UPSTREAM_TIMEOUT.
ABORT_AFTER = 0.2


@dataclass
class ScrapeResult:
    requests: int
    series: int
    size_bytes: int
    times_ms: list[float]
    by_family: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)


def summary(result: ScrapeResult) -> str:
    parts = ", ".join(f"{name} {n:,}" for name, n in result.by_family.items())
    return (
        f"{result.series:,} samples ({parts}), {result.size_bytes / 1024:.0f} KiB, "
        f"scrape {result.median_ms:.1f} ms median of {len(result.times_ms)}"
    )


def _answers() -> list[str]:
    from sinch_sms_exporter.sim import simulator

    return [*simulator.CATALOG_ANSWERS, *(f"novel:novel_code_{i:02d}" for i in range(NOVEL_CODES))]


def expected_response_series(work: list[tuple[str, str, str]]) -> int:
    """How many sinch_sms_responses_total series `work` makes: one per route, status and code,
    where two answers can be the same series (delivery feedback answers 202 to `ok` and to `202`)."""
    from sinch_sms_exporter.classify import responses
    from sinch_sms_exporter.classify import routes as sinch_routes
    from sinch_sms_exporter.sim import simulator

    series = set()
    for path, method, spec in work:
        endpoint = sinch_routes.endpoint_of(f"/xms/v1/BENCHPLAN/{path}")
        answer = simulator.parse_answer(spec, method, endpoint)
        code = responses.code_of_json(answer.body) if answer.status >= 400 else ""
        series.add((endpoint, method, answer.status, code))
    return len(series)


def _fill(port: int, work: list[tuple[str, str, str]]) -> int:
    """Send each (path, method, answer) on one keep-alive connection (a new one after a fault)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path, method, answer in work:
        try:
            conn.request(method, f"/xms/v1/BENCHPLAN/{path}", body=b"{}", headers={"X-Sinch-Sim": answer})
            response = conn.getresponse()
            response.read()
            if response.getheader("connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):  # a cut answer reaches the client as an incomplete body
            conn.close()
    conn.close()
    return len(work)


def _abort(port: int, path: str, method: str) -> None:
    """A request whose upstream hangs; the client hangs up after ABORT_AFTER seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"{method} /xms/v1/BENCHPLAN/{path} HTTP/1.1\r\nHost: bench\r\nX-Sinch-Sim: hang\r\n"
            "Content-Length: 2\r\n\r\n{}".encode()
        )
        time.sleep(ABORT_AFTER)


def _get(port: int) -> tuple[float, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, body


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that nobody trusts (cryptography comes with mitmproxy)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "untrusted bench simulator")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "untrusted.crt", directory / "untrusted.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _series(body: bytes) -> dict[str, set[tuple[str, ...]]]:
    """Label tuples per sample name (route labels first) of the exposition."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            route = (s.labels.get("endpoint", ""), s.labels.get("method", ""))
            rest = tuple(v for k, v in sorted(s.labels.items()) if k not in ("endpoint", "method", "region"))
            out.setdefault(s.name, set()).add((*route, *rest))
    return out


def check_series(body: bytes, expected_responses: int) -> list[str]:
    """What the phase claims to have made: every reason and an abort on every route, and one
    response series per route and answer. [] when all are there."""
    from sinch_sms_exporter.classify import routes as sinch_routes

    series = _series(body)
    problems = []
    routes_ = {(sinch_routes.endpoint_of(f"/xms/v1/BENCHPLAN/{p}"), m) for p, m in ROUTES}
    errors = series.get("sinch_sms_upstream_errors_total", set())
    for reason in sorted({*FAULTS.values(), *LISTENER_REASONS}):
        missing = sorted(r for r in routes_ if (*r, reason) not in errors)
        if missing:
            problems.append(f"no upstream error {reason!r} on {len(missing)} routes (e.g. {missing[0]})")
    aborts = series.get("sinch_sms_client_aborts_total", set())
    if missing_aborts := sorted(routes_ - aborts):
        problems.append(f"no client abort on {len(missing_aborts)} routes (e.g. {missing_aborts[0]})")
    responses = len(series.get("sinch_sms_responses_total", ()))
    if responses != expected_responses:
        problems.append(f"{responses} response series, expected {expected_responses}")
    return problems


def _family_sizes(body: bytes) -> dict[str, int]:
    names = {
        "sinch_sms_responses_total": "responses",
        "sinch_sms_request_duration_seconds": "latency histogram",
        "sinch_sms_upstream_errors_total": "upstream errors",
        "sinch_sms_client_aborts_total": "client aborts",
    }
    sizes = dict.fromkeys([*names.values(), "other"], 0)
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            metric = line.split("{", 1)[0].split(" ", 1)[0]
            family = next((v for k, v in names.items() if metric.startswith(k)), "other")
            sizes[family] += 1
    return sizes


def measure(home: Path, cpus: str | None, scrapes: int = 30) -> ScrapeResult:
    cert, key = self_signed(home / "scrape-tls")
    simulator_port, tls_port, closed_port = procs.free_port(), procs.free_port(), procs.free_port()
    simulator = procs.start_process(
        "simulator",
        [str(procs.BIN / "sinch-sms-simulator"), "--port", str(simulator_port)],
        simulator_port,
        home / "simulator.log",
        None,
    )
    tls_simulator = procs.start_process(
        "tls-simulator",
        [
            str(procs.BIN / "sinch-sms-simulator"),
            "--port",
            str(tls_port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        tls_port,
        home / "tls-simulator.log",
        None,
    )
    connect_listener, tls_listener = procs.free_port(), procs.free_port()
    extra = ("--upstream", f"http://127.0.0.1:{closed_port}@{connect_listener}", "--region", "us",
             "--upstream", f"https://127.0.0.1:{tls_port}@{tls_listener}", "--region", "us",
             "--upstream-timeout", f"{UPSTREAM_TIMEOUT:g}")  # fmt: skip
    proxy = procs.start_sinch_proxy(f"http://127.0.0.1:{simulator_port}", home, cpus, *extra, name="scrape-proxy")
    try:
        for port in (connect_listener, tls_listener):
            procs.wait_for_port(port, proxy.popen)
        answers = _answers()
        work = [(path, method, answer) for path, method in ROUTES for answer in answers]
        faults = [(path, method, fault) for path, method in ROUTES for fault in FAULTS]
        with ThreadPoolExecutor(8) as pool:
            sent = sum(pool.map(lambda i: _fill(proxy.port, work[i::4]), range(4)))
            sent += sum(pool.map(lambda item: _fill(proxy.port, [item]), faults))
            for port in (connect_listener, tls_listener):
                sent += sum(pool.map(lambda route, port=port: _fill(port, [(*route, "ok")]), ROUTES))
            list(pool.map(lambda route: _abort(proxy.port, *route), ROUTES))
            sent += len(ROUTES)
        # Aborted flows are counted when mitmproxy notices the closed client connection.
        deadline = time.monotonic() + 10
        assert proxy.metrics_port is not None
        while True:
            body = _get(proxy.metrics_port)[1]  # the first scrape pays one-off costs (imports, buffers)
            problems = check_series(body, expected_response_series(work))
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        times = []
        for _ in range(scrapes):
            elapsed, body = _get(proxy.metrics_port)
            times.append(elapsed * 1000)
        sizes = _family_sizes(body)
        return ScrapeResult(sent, sum(sizes.values()), len(body), times, sizes, problems)
    finally:
        proxy.stop()
        tls_simulator.stop()
        simulator.stop()


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="sinch-scrape-"))
    result = measure(home, None)
    print(f"{result.requests:,} requests through the proxy\n{summary(result)}")
    for problem in result.problems:
        print(f"!! {problem}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
