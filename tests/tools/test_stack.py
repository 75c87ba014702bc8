"""The native stack (`make stack`, tools.stack): the compose topology without Docker.

A blocked_account answer driven through the proxy must become a firing SinchSmsAccountBlocked
in the stack's real Prometheus (its /api/v1/alerts) within a bounded time, and, where
Alertmanager is installed, reach it and page through the repo's critical route.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.helpers.client import http
from tests.helpers.paths import PLAN, REPO
from tests.helpers.processes import Process, free_port, start, wait_until
from tests.helpers.prometheus import prom_query, system_tool
from tools import stack

pytestmark = [pytest.mark.e2e]

#: With 1 s scrape and evaluation intervals the alert needs about two of each; the bound
#: leaves room for a loaded 2-core CI machine.
FIRE_WITHIN = 20.0
#: Alertmanager's critical route waits group_wait (10 s) before the first page.
PAGE_WITHIN = 40.0


def test_prometheus_config_maps_every_compose_target_and_keeps_the_job(tmp_path: Path) -> None:
    addresses = {
        "proxy:19880": "127.0.0.1:1001",
        "localhost:9090": "127.0.0.1:1002",
        "prometheus:9090": "127.0.0.1:1002",
        "alertmanager:9093": "127.0.0.1:1003",
    }
    config = stack.prometheus_config(REPO, addresses, 1, with_alertmanager=True)
    jobs = {
        job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]] for job in config["scrape_configs"]
    }
    assert jobs["sinch-sms-exporter"] == ["127.0.0.1:1001"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:1003"]
    assert config["global"]["evaluation_interval"] == "1s"
    assert [Path(f) for f in config["rule_files"]] == [
        REPO / "prometheus" / "alerts.yml",
        REPO / "prometheus" / "recording.yml",
    ]

    without = stack.prometheus_config(REPO, addresses, None, with_alertmanager=False)
    assert "alerting" not in without
    assert "alertmanager" not in {job["job_name"] for job in without["scrape_configs"]}

    # What the stack writes is a valid Prometheus config, rules included (real promtool).
    path = tmp_path / "prometheus.yml"
    with open(path, "w") as out:
        YAML(typ="safe").dump(config, out)
    check = subprocess.run([system_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 2 rule files found" in check.stdout


def test_prometheus_config_refuses_a_target_it_cannot_map() -> None:
    with pytest.raises(stack.StackError, match="proxy:19880"):
        stack.prometheus_config(REPO, {"localhost:9090": "127.0.0.1:1"}, None, with_alertmanager=False)


def test_alertmanager_config_pages_the_local_pager(tmp_path: Path) -> None:
    config = stack.alertmanager_config(REPO, "http://127.0.0.1:1234/alertmanager")
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls == ["http://127.0.0.1:1234/alertmanager"]
    path = tmp_path / "alertmanager.yml"
    with open(path, "w") as out:
        YAML(typ="safe").dump(config, out)
    amtool = system_tool("amtool")
    assert subprocess.run([amtool, "check-config", str(path)], capture_output=True).returncode == 0
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={path}", "--verify.receivers=pager", "severity=critical"],
        capture_output=True,
        text=True,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr


def test_without_prometheus_it_says_so_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.stack", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},  # nothing to find there
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "make stack: error: prometheus is not installed (Debian: apt-get install prometheus); `make demo` needs none"
    ]


def test_a_taken_port_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    system_tool("prometheus")  # checked first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tools.stack", "--workdir", str(tmp_path), "--no-alertmanager",
             "--simulator-port", str(free_port()), "--listen-port", str(free_port()),
             "--callback-port", str(free_port()), "--receiver-port", str(free_port()),
             "--metrics-port", str(free_port()), "--prometheus-port", str(port)],
            capture_output=True, text=True, cwd=REPO, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"make stack: error: port {port} is already in use: pick another with --prometheus-port"
    ]
    assert not list(tmp_path.glob("*.log")), "nothing was started"


class Stack:
    def __init__(self, proc: Process, ports: dict[str, int], workdir: Path, alertmanager: bool) -> None:
        self.proc, self.ports, self.workdir, self.alertmanager = proc, ports, workdir, alertmanager

    def send(self, sim: str) -> int:
        url = f"http://127.0.0.1:{self.ports['listen']}{PLAN}/batches"
        status, _, _ = http("POST", url, b'{"to": ["+15551231234"], "body": "x"}', {"X-Sinch-Sim": sim})
        return status

    def alerts(self, name: str) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/alerts", timeout=5) as r:
            return [a for a in json.load(r)["data"]["alerts"] if a["labels"]["alertname"] == name]


@pytest.fixture(scope="module")
def native_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system_tool("prometheus")
    workdir = tmp_path_factory.mktemp("stack")
    names = ("simulator", "listen", "callback", "receiver", "metrics", "prometheus", "alertmanager", "pager")
    ports = {name: free_port() for name in names}
    argv = [sys.executable, "-m", "tools.stack", "--workdir", str(workdir), "--interval", "1",
            "--rate", "0", "--report-every", "0"]  # fmt: skip
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    proc = start(argv, workdir / "stack.log")
    try:
        wait_until(
            lambda: "stack ready" in proc.log() or proc.popen.poll() is not None, timeout=60, what="the stack to start"
        )
        assert proc.popen.poll() is None, proc.log()
        yield Stack(proc, ports, workdir, stack.alertmanager_binary() is not None)
    finally:
        proc.stop()
        assert proc.popen.returncode == 0, proc.log()


def test_blocked_account_fires_in_prometheus_within_bounded_time(native_stack: Stack) -> None:
    # A success first: scraped (the job is the alert rules' job), and nothing fires for it.
    assert native_stack.send("ok") == 201
    port = native_stack.ports["prometheus"]
    wait_until(
        lambda: prom_query(port, 'sinch_sms_responses_total{job="sinch-sms-exporter",status="201"}')["result"],
        timeout=FIRE_WITHIN,
        what="the success answer to be scraped",
    )
    time.sleep(2.5)  # two more evaluations of the rules
    assert native_stack.alerts("SinchSmsAccountBlocked") == []

    started = time.monotonic()
    assert native_stack.send("403:blocked_account") == 403
    firing = wait_until(
        lambda: [a for a in native_stack.alerts("SinchSmsAccountBlocked") if a["state"] == "firing"],
        timeout=FIRE_WITHIN,
        interval=0.1,
        what="SinchSmsAccountBlocked to fire",
    )
    elapsed = time.monotonic() - started
    print(f"\nSinchSmsAccountBlocked firing {elapsed:.2f} s after the blocked_account answer (1 s intervals)")
    assert firing[0]["labels"]["region"] == "us"
    assert firing[0]["labels"]["severity"] == "critical"
    assert "blocked_account" in firing[0]["annotations"]["description"]


def test_blocked_account_reaches_alertmanager_and_pages(native_stack: Stack) -> None:
    if not native_stack.alertmanager:
        system_tool("prometheus-alertmanager")  # skips, or fails in CI
    started = time.monotonic()
    assert native_stack.send("403:blocked_account") == 403
    am = native_stack.ports["alertmanager"]

    def in_alertmanager() -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{am}/api/v2/alerts", timeout=5) as response:
            return [a for a in json.load(response) if a["labels"]["alertname"] == "SinchSmsAccountBlocked"]

    alerts = wait_until(in_alertmanager, timeout=PAGE_WITHIN, what="the alert to reach Alertmanager")
    assert [r["name"] for r in alerts[0]["receivers"]] == ["pager"]
    pages = native_stack.workdir / "pages.jsonl"

    def paged() -> list[dict]:
        lines = pages.read_text().splitlines() if pages.exists() else []
        return [json.loads(line) for line in lines]

    entries = wait_until(paged, timeout=PAGE_WITHIN, what="the pager to be called")
    print(f"\npaged {time.monotonic() - started:.2f} s after the blocked_account answer (group_wait 10 s)")
    assert entries[0]["receiver"] == "pager"
    assert entries[0]["status"] == "firing"
    assert entries[0]["labels"]["alertname"] == "SinchSmsAccountBlocked"
    assert "PAGE via pager: firing SinchSmsAccountBlocked" in native_stack.proc.log()


def test_delivery_reports_reach_prometheus_and_the_failure_alert_goes_pending(native_stack: Stack) -> None:
    """A batch whose 20 messages all fail, its reports called back by the simulator through the
    stack's callback listener to its receiver: Prometheus has them, and SinchSmsDeliveryFailureRate
    is pending (it fires after its `for: 10m`, see docs/alerts.md)."""
    callback = f"http://127.0.0.1:{native_stack.ports['callback']}/sinch/callbacks"
    url = f"http://127.0.0.1:{native_stack.ports['listen']}{PLAN}/batches"
    port = native_stack.ports["prometheus"]
    query = 'sum(sinch_sms_delivery_reports_total{job="sinch-sms-exporter",status="failed",code="402"})'
    # One failure first: the series is born (rate() sees nothing of the value it is born with),
    # then 20 at once.
    for recipients in (1, 20):
        batch = {"to": [f"+1555000{i:04d}" for i in range(recipients)], "body": "x", "callback_url": callback,
                 "delivery_report": "per_recipient_final"}  # fmt: skip
        headers = {"X-Sinch-Sim": "ok", "X-Sinch-Sim-Delivery": "Failed:402"}
        assert http("POST", url, json.dumps(batch).encode(), headers)[0] == 201
        wait_until(
            lambda n=recipients: (r := prom_query(port, query)["result"]) and float(r[0]["value"][1]) >= n,
            timeout=FIRE_WITHIN,
            what="failed delivery reports in Prometheus",
        )
    pending = wait_until(
        lambda: native_stack.alerts("SinchSmsDeliveryFailureRate"),
        timeout=FIRE_WITHIN,
        what="SinchSmsDeliveryFailureRate to be pending",
    )
    assert pending[0]["labels"]["severity"] == "warning"
    assert "region" not in pending[0]["labels"]
