"""Shared helpers for the end-to-end tests: real processes on loopback, real scrapes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROXY = str(BIN / "sinch-sms-proxy")
SIMULATOR = str(BIN / "sinch-sms-simulator")
PLAN = "/xms/v1/TESTPLAN123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Process:
    """A started process whose stdout+stderr go to a log file (read with .log())."""

    popen: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0, again_after: float = 3.0) -> int:
        """`sig`; if still running after `again_after` s, `sig` again (a draining proxy waits
        up to its --shutdown-grace for a scrape, a second signal ends it); after `timeout`, kill."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(again_after)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(sig)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
        return self.popen.returncode


def start(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Process:
    log = open(log_path, "wb")  # noqa: SIM115 - closed when the process object goes
    popen = subprocess.Popen(
        list(argv), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO
    )
    return Process(popen, log_path)


def start_simulator(tmp: Path, *args: str, port: int | None = None) -> Process:
    port = port or free_port()
    proc = start([SIMULATOR, "--port", str(port), *args], tmp / f"simulator-{port}.log")
    wait_for_port(port, proc=proc.popen)
    proc.ports["http"] = port
    return proc


def start_proxy(
    tmp: Path,
    upstream: str,
    *args: str,
    region: str | None = "us",
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
) -> Process:
    """Start sinch-sms-proxy in front of `upstream`; wait until both its ports answer.

    `ports` (listen, metrics) restarts a proxy where an earlier one listened; default: free ports."""
    listen, metrics = ports or (free_port(), free_port())
    argv = [PROXY, "--upstream", upstream, "--listen-port", str(listen), "--metrics-port", str(metrics),
            "--metrics-host", "127.0.0.1", "--confdir", str(tmp / "mitmproxy"), *args]  # fmt: skip
    if region:
        argv += ["--region", region]
    proc = start(argv, tmp / f"proxy-{listen}.log", env)
    wait_for_port(listen, proc=proc.popen)
    wait_for_port(metrics, proc=proc.popen)
    proc.ports.update(listen=listen, metrics=metrics)
    return proc


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; returns (status, headers, body) for every status, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def scrape(metrics_port: int, host: str = "127.0.0.1") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics and parse it with prometheus_client's own parser.

    Returns {(sample name, sorted label items): value}.
    """
    text = urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=10).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for (sample, items), value in samples.items()
        if sample == name and all(dict(items).get(k) == v for k, v in labels.items())
    )


def promtool() -> str | None:
    return shutil.which("promtool")


def prometheus() -> str | None:
    return shutil.which("prometheus")


#: Debian package of each system tool the tests drive (.ci/run installs them).
_DEBIAN_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "hey": "hey",
    "nginx": "nginx-light",
}


def system_tool(name: str, install: str | None = None) -> str:
    """Path of a Debian-packaged tool (promtool, prometheus, …) a test drives for real.

    Missing tool: the test skips and says which package to install, except in CI
    (SINCH_REQUIRE_SYSTEM_TOOLS=1), where a skip would hide an untested part, so it fails.
    """
    path = shutil.which(name)
    if path:
        return path
    package = _DEBIAN_PACKAGES.get(name, name)
    message = f"{name} is not installed ({install or f'Debian package {package}: apt-get install {package}'})"
    if os.environ.get("SINCH_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"{message}, and SINCH_REQUIRE_SYSTEM_TOOLS=1 says it must run")
    pytest.skip(message)


def start_prometheus(
    tmp: Path,
    config: str | Path,
    *,
    rule_files: Sequence[Path] = (),
    port: int | None = None,
    args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Process:
    """Start a real Prometheus on a free loopback port, its TSDB under `tmp`; wait until /-/ready.

    `config` is prometheus.yml as text or a path. `rule_files` are added to its `rule_files`
    (as absolute paths, so the config needs none). ports["http"] is the web/API port: query it
    with prom_query(). Skips (or fails, in CI) when Debian's prometheus is not installed.
    """
    binary = system_tool("prometheus")
    port = port or free_port()
    home = tmp / f"prometheus-{port}"
    home.mkdir(parents=True, exist_ok=True)
    text = config.read_text() if isinstance(config, Path) else config
    if rule_files:
        yaml = YAML(typ="safe")
        doc = yaml.load(text) or {}
        doc["rule_files"] = [*doc.get("rule_files", []), *(str(Path(f).resolve()) for f in rule_files)]
        with open(home / "prometheus.yml", "w") as out:
            yaml.dump(doc, out)
    else:
        (home / "prometheus.yml").write_text(text)
    argv = [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", *args]  # fmt: skip
    proc = start(argv, home / "prometheus.log")
    proc.ports["http"] = port
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.popen.returncode}:\n{proc.log()[-3000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).status == 200:
                return proc
        if time.monotonic() > deadline:
            proc.stop()
            raise TimeoutError(f"prometheus not ready after {timeout} s:\n{proc.log()[-3000:]}")
        time.sleep(0.1)


class PrometheusQueryError(RuntimeError):
    """The Prometheus HTTP API refused a query (bad PromQL, unknown function, …)."""


def _prom_api(port: int, endpoint: str, form: dict[str, str], host: str) -> dict:
    request = urllib.request.Request(
        f"http://{host}:{port}/api/v1/{endpoint}", data=urllib.parse.urlencode(form).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
    if answer.get("status") != "success":
        raise PrometheusQueryError(f"{answer.get('errorType')}: {answer.get('error')} ({endpoint}: {form['query']})")
    return answer["data"]


def prom_query(port: int, expr: str, at: float | None = None, host: str = "127.0.0.1") -> dict:
    """Run an instant query through the HTTP API (/api/v1/query); returns its `data`
    ({"resultType": …, "result": […]}) or raises PrometheusQueryError with Prometheus's message."""
    return _prom_api(port, "query", {"query": expr, **({"time": str(at)} if at is not None else {})}, host)


def prom_range(port: int, expr: str, start: float, end: float, step: float, host: str = "127.0.0.1") -> dict:
    """What a Grafana time series panel asks: /api/v1/query_range; its `data`, or raises
    PrometheusQueryError."""
    form = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    return _prom_api(port, "query_range", form, host)


def run_in_threads(target: Callable[..., object], args_list: Sequence[tuple]) -> None:
    """`target(*args)` for every args, each on a thread of its own, all at once; returns when
    all have ended (concurrent clients: what target records is the caller's to check)."""
    threads = [threading.Thread(target=target, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(check, timeout: float = 30.0, interval: float = 0.25, what: str = "condition"):
    """Call `check()` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout} s")
        time.sleep(interval)
