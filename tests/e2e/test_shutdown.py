"""Shutdown without loss (docs/operations.md, "Shutdown"), with the real proxy process.

On SIGTERM (or a first SIGINT) calls in flight finish and new calls are still proxied; the
proxy exits, status 0, once nothing is in flight and /metrics was scraped since the last
count (at once if never scraped), or when --shutdown-grace runs out; a second signal ends
it at once. /healthz answers 503 `draining: …` meanwhile; /metrics keeps answering.

The upstream here is a gate the test holds: it answers a request marked `X-Gate: hold` only
when the test opens the gate, and says when such a request has arrived. So "a call is in
flight at SIGTERM" is a fact the test waited for, not a sleep.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sinch_sms_exporter import exposition
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import BIN, PLAN, REPO
from tests.helpers.processes import (
    Process,
    free_port,
    running,
    start,
    start_proxy,
    start_simulator,
    wait_for_port,
    wait_until,
)
from tests.helpers.prometheus import prom_query, start_prometheus

pytestmark = [pytest.mark.e2e]

#: A big answer (four times a typical socket buffer on loopback): it must arrive byte for byte.
BIG_BODY = b'{"count": 1, "batches": ["' + b"x" * (1 << 20) + b'"]}'
#: How long a proxy may take to exit when nothing keeps it (the process's own teardown).
PROMPT = 3.0


class Gate:
    """An upstream that holds `X-Gate: hold` requests until opened; others answer at once."""

    def __init__(self) -> None:
        gate = self
        self.opened = threading.Event()
        self.held = threading.Semaphore(0)  # released once per held request that arrived

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("X-Gate") == "hold":
                    gate.held.release()
                    gate.opened.wait(60)
                    self._answer(201, BIG_BODY)
                elif self.headers.get("X-Gate") == "blocked":
                    self._answer(403, b'{"code": "blocked_account", "text": "blocked"}')
                else:
                    self._answer(201, b'{"id": "01TEST", "to": ["15550000000"]}')

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a proxy stopped at once cut it: expected
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_held(self, timeout: float = 20.0) -> None:
        assert self.held.acquire(timeout=timeout), "the held request never reached the upstream"


@pytest.fixture
def gate() -> Iterator[Gate]:
    upstream = Gate()
    upstream.thread.start()
    try:
        yield upstream
    finally:
        upstream.opened.set()
        upstream.server.shutdown()
        upstream.server.server_close()


class Call(threading.Thread):
    """One call through the proxy on a thread of its own; `.result` is (status, body) or the error."""

    def __init__(self, port: int, gate_header: str = "hold") -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}{PLAN}/batches"
        self.gate_header = gate_header
        self.result: tuple[int, bytes] | Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            status, _, body = http("POST", self.url, b'{"to": ["+15550000000"]}', {"X-Gate": self.gate_header}, 60)
            self.result = (status, body)
        except Exception as exc:  # noqa: BLE001 - the test asserts what it got
            self.result = exc


def call(port: int, gate_header: str = "now") -> int:
    status, _, _ = http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Gate": gate_header})
    return status


def healthz(proxy: Process) -> tuple[int, str]:
    status, _, body = http("GET", f"http://127.0.0.1:{proxy.ports['metrics']}/healthz", timeout=5)
    return status, body.decode()


def wait_draining(proxy: Process, contains: str = "") -> str:
    def draining() -> str | None:
        status, line = healthz(proxy)
        return line if status == 503 and line.startswith("draining: ") and contains in line else None

    return wait_until(draining, timeout=10, interval=0.02, what=f"/healthz to say draining ({contains})")


def wait_exit(proxy: Process, timeout: float) -> tuple[int, float]:
    """(exit status, seconds it took from now)."""
    started = time.monotonic()
    try:
        code = proxy.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the proxy did not exit within {timeout} s:\n{proxy.log()[-3000:]}")
    return code, time.monotonic() - started


def responses(proxy: Process) -> float:
    return total(scrape(proxy.ports["metrics"]), "sinch_sms_responses_total")


def test_drain_finishes_the_call_in_flight_serves_new_calls_and_exits_once_scraped(tmp_path: Path, gate: Gate) -> None:
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", "30")) as proxy:
        listen = proxy.ports["listen"]
        assert call(listen) == 201
        assert responses(proxy) == 1  # scraped: from now on the proxy waits for the next scrape
        held = Call(listen)
        gate.wait_held()

        proxy.popen.send_signal(signal.SIGTERM)
        line = wait_draining(proxy, "1 call in flight")
        assert "\n" not in line.strip()

        # The service is still sending: a new call is proxied and counted, /metrics answers.
        assert call(listen, "blocked") == 403
        assert total(scrape(proxy.ports["metrics"]), "sinch_sms_responses_total", code="blocked_account") == 1
        assert proxy.popen.poll() is None, "exited with a call in flight"

        gate.opened.set()
        held.join(30)
        assert held.result is not None and not isinstance(held.result, Exception), held.result
        status, body = held.result
        assert status == 201
        assert hashlib.sha256(body).digest() == hashlib.sha256(BIG_BODY).digest(), "the answer arrived cut"

        # Idle now, but the held call's count was never scraped: the proxy waits for it.
        wait_draining(proxy, "counts not yet scraped")
        assert "call in flight" not in healthz(proxy)[1]
        assert proxy.popen.poll() is None
        samples = scrape(proxy.ports["metrics"])
        scraped_at = time.monotonic()
        assert total(samples, "sinch_sms_responses_total") == 3, "a scrape during the drain sees every count"
        code = proxy.popen.wait(PROMPT)
        took = time.monotonic() - scraped_at
    print(f"\nexit {took * 1000:.0f} ms after the last scrape")
    assert code == 0, proxy.log()[-3000:]
    log = proxy.log()
    assert "shutting down: waiting for 1 call in flight" in log, log[-3000:]
    assert "drained" in log and "Traceback" not in log, log[-3000:]


def test_sigterm_in_the_middle_of_traffic_loses_no_call_and_no_count(tmp_path: Path) -> None:
    """The acceptance check: a real Prometheus scrapes every second while clients keep calling
    through SIGTERM. Every call gets its answer, Prometheus's last values hold every answer the
    clients got, and the proxy exits within about a scrape interval of the last call."""
    answers = ("ok", "403:blocked_account", "slow:0.3", "429")
    sent_after_signal = 5  # calls each client makes once the proxy got SIGTERM
    with (
        running(start_simulator(tmp_path)) as sim,
        running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}", "--shutdown-grace", "20")) as proxy,
    ):
        config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: sinch-sms-proxy
    static_configs: [{{targets: ["127.0.0.1:{proxy.ports["metrics"]}"]}}]
"""
        with running(start_prometheus(tmp_path, config)) as prometheus:
            prom = prometheus.ports["http"]
            wait_until(lambda: prom_query(prom, "up == 1")["result"], what="the first scrape")
            signalled = threading.Event()
            lock = threading.Lock()
            got: list[int | str] = []

            def client(n: int) -> None:
                after = 0
                while after < sent_after_signal:
                    after += signalled.is_set()
                    sim_answer = answers[(n + len(got)) % len(answers)]
                    url = f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/batches"
                    try:
                        status, _, _ = http("POST", url, b"{}", {"X-Sinch-Sim": sim_answer}, 10)
                    except OSError as exc:
                        status = f"{type(exc).__name__}: {exc}"
                    with lock:
                        got.append(status)

            clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
            for thread in clients:
                thread.start()
            wait_until(lambda: len(got) >= 20, interval=0.02, what="traffic before the signal")
            proxy.popen.send_signal(signal.SIGTERM)
            signalled.set()
            for thread in clients:
                thread.join(30)
            code, took = wait_exit(proxy, 10)
            assert code == 0, proxy.log()[-3000:]
            assert [g for g in got if not isinstance(g, int)] == [], "every call got an answer"
            assert set(got) <= {201, 403, 429}
            # The last scrape Prometheus made holds every answer the clients got.
            result = prom_query(prom, "sum(last_over_time(sinch_sms_responses_total[5m]))")["result"]
            assert float(result[0]["value"][1]) == len(got)
            blocked = prom_query(prom, 'sum(last_over_time(sinch_sms_responses_total{code="blocked_account"}[5m]))')
            assert float(blocked["result"][0]["value"][1]) == got.count(403)
    print(f"\n{len(got)} calls, SIGTERM mid-traffic: exit {took:.2f} s after the last call (scrapes every 1 s)")
    assert took < 1 + PROMPT, "about one scrape interval after the last call"


def test_scraped_and_idle_exits_at_once(tmp_path: Path, gate: Gate) -> None:
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", "30")) as proxy:
        assert call(proxy.ports["listen"]) == 201
        assert responses(proxy) == 1
        proxy.popen.send_signal(signal.SIGTERM)
        code, took = wait_exit(proxy, PROMPT)
    print(f"\nscraped and idle: exit {took * 1000:.0f} ms after SIGTERM")
    assert code == 0, proxy.log()[-3000:]
    assert "shutting down: nothing in flight, every count scraped" in proxy.log()


def test_never_scraped_and_idle_exits_at_once(tmp_path: Path, gate: Gate) -> None:
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", "30")) as proxy:
        assert call(proxy.ports["listen"], "blocked") == 403  # a count nobody will ever scrape
        proxy.popen.send_signal(signal.SIGINT)  # Ctrl-C drains like SIGTERM
        code, took = wait_exit(proxy, PROMPT)
    print(f"\nnever scraped and idle: exit {took * 1000:.0f} ms after SIGINT")
    assert code == 0, proxy.log()[-3000:]


def test_an_unscraped_count_keeps_it_running_but_not_past_the_grace(tmp_path: Path, gate: Gate) -> None:
    grace = 2.0
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", f"{grace:g}")) as proxy:
        listen = proxy.ports["listen"]
        assert call(listen) == 201
        assert responses(proxy) == 1
        assert call(listen, "blocked") == 403  # counted after the last scrape
        signalled = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        assert wait_draining(proxy, "counts not yet scraped")
        code, _ = wait_exit(proxy, grace + PROMPT)
        took = time.monotonic() - signalled
    print(f"\nunscraped count, grace {grace:g} s: exit {took:.2f} s after SIGTERM")
    assert code == 0, proxy.log()[-3000:]
    assert grace - 0.1 <= took <= grace + PROMPT, took
    assert f"shutting down on the shutdown grace ({grace:g} s) ran out, still waiting for counts not yet scraped" in (
        proxy.log()
    )


def test_a_second_signal_ends_the_drain_at_once(tmp_path: Path, gate: Gate) -> None:
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", "60")) as proxy:
        held = Call(proxy.ports["listen"])
        gate.wait_held()
        proxy.popen.send_signal(signal.SIGTERM)
        wait_draining(proxy, "1 call in flight")
        proxy.popen.send_signal(signal.SIGINT)
        code, took = wait_exit(proxy, PROMPT)
    print(f"\nsecond signal: exit {took * 1000:.0f} ms after it")
    assert code == 0, proxy.log()[-3000:]
    assert "shutting down on a second signal, still waiting for 1 call in flight" in proxy.log()
    gate.opened.set()
    held.join(10)
    assert isinstance(held.result, Exception), "the call was cut, as a second signal asks"


def test_grace_zero_exits_at_once_even_with_a_call_in_flight(tmp_path: Path, gate: Gate) -> None:
    with running(start_proxy(tmp_path, gate.url, "--shutdown-grace", "0")) as proxy:
        Call(proxy.ports["listen"])
        gate.wait_held()
        proxy.popen.send_signal(signal.SIGTERM)
        code, _ = wait_exit(proxy, PROMPT)
    assert code == 0, proxy.log()[-3000:]


def start_mitmdump(tmp_path: Path, upstream: str, grace: str) -> Process:
    listen, metrics = free_port(), free_port()
    script = REPO / "addon" / "sinch_sms_exporter" / "mitmproxy_script.py"
    argv = [str(BIN / "mitmdump"), "-q", "-s", str(script), "--mode", f"reverse:{upstream}",
            "--listen-host", "127.0.0.1", "-p", str(listen), "--set", f"confdir={tmp_path / 'mitmproxy'}",
            "--set", "sinch_metrics_host=127.0.0.1", "--set", f"sinch_metrics_port={metrics}",
            "--set", f"sinch_shutdown_grace={grace}"]  # fmt: skip
    proxy = start(argv, tmp_path / "mitmdump.log")
    proxy.ports.update(listen=listen, metrics=metrics)
    wait_for_port(listen, proc=proxy.popen)
    wait_for_port(metrics, proc=proxy.popen)
    return proxy


def test_mitmdump_s_drains_the_same_way(tmp_path: Path, gate: Gate) -> None:
    """Under plain mitmdump the addon's `done` hook drains: mitmproxy awaits it with its
    listeners still running."""
    with running(start_mitmdump(tmp_path, gate.url, "30")) as proxy:
        listen = proxy.ports["listen"]
        assert call(listen) == 201
        assert responses(proxy) == 1
        held = Call(listen)
        gate.wait_held()
        proxy.popen.send_signal(signal.SIGTERM)
        wait_draining(proxy, "1 call in flight")
        assert call(listen, "blocked") == 403, "new calls are still proxied"
        gate.opened.set()
        held.join(30)
        assert isinstance(held.result, tuple) and held.result[0] == 201, held.result
        assert held.result[1] == BIG_BODY
        wait_draining(proxy, "counts not yet scraped")
        assert responses(proxy) == 3
        code, took = wait_exit(proxy, PROMPT)
    print(f"\nmitmdump: exit {took * 1000:.0f} ms after the last scrape")
    assert code == 0, proxy.log()[-3000:]


def test_mitmdump_s_second_signal_stops_at_once(tmp_path: Path, gate: Gate) -> None:
    """mitmdump's own handlers would only set its exit flag again: while draining, the addon
    takes SIGTERM/SIGINT."""
    with running(start_mitmdump(tmp_path, gate.url, "60")) as proxy:
        Call(proxy.ports["listen"])
        gate.wait_held()
        proxy.popen.send_signal(signal.SIGINT)
        wait_draining(proxy, "1 call in flight")
        proxy.popen.send_signal(signal.SIGINT)
        code, took = wait_exit(proxy, PROMPT)
    print(f"\nmitmdump, second signal: exit {took * 1000:.0f} ms after it")
    assert code == 0, proxy.log()[-3000:]


def test_cli_flag_and_variable_become_the_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sinch_sms_exporter import cli

    base = ["--listen-port", str(free_port()), "--metrics-port", str(free_port()), "--confdir", str(tmp_path)]
    assert cli.settings_from(cli.build_parser().parse_args(base))["sinch_shutdown_grace"] == "25"
    args = cli.build_parser().parse_args([*base, "--shutdown-grace", "2.5"])
    assert cli.settings_from(args)["sinch_shutdown_grace"] == "2.5"
    parser = cli.build_parser()
    parser.apply_environment({"SINCH_PROXY_SHUTDOWN_GRACE": "7"})
    assert cli.settings_from(parser.parse_args(base))["sinch_shutdown_grace"] == "7"
    for bad in ("-1", "inf"):
        with pytest.raises(cli.UsageError, match=r"--shutdown-grace .*: must be 0 \(exit at once\) or more seconds"):
            cli.settings_from(cli.build_parser().parse_args([*base, "--shutdown-grace", bad]))


class _Counts:
    def __init__(self) -> None:
        self.recorded = 0
        self.scraped: int | None = None


def test_a_scrape_counts_only_once_its_body_was_written_whole() -> None:
    counts = _Counts()
    counts.recorded = 4
    app = exposition._recording_scrapes(lambda environ, start_response: [b"a", b"b"], counts)
    body = app({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, None)
    counts.recorded = 5  # a count while the scrape is written: not in it
    blocks = iter(body)
    assert next(blocks) == b"a" and next(blocks) == b"b"
    assert counts.scraped is None, "the server has not finished writing"
    assert list(blocks) == []
    assert counts.scraped == 4
    # a filtered scrape, or one cut short, does not count
    app({"REQUEST_METHOD": "GET", "QUERY_STRING": "name[]=up"}, None)
    cut = iter(app({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, None))
    next(cut)
    assert counts.scraped == 4
    assert len(app({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, None)) == 2  # Content-Length still set
