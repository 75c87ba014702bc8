"""The Debian-packaged monitoring tools the tests drive for real: promtool, Prometheus and its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.helpers.processes import Process, free_port, start


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
