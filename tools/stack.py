"""`make stack`: the docker-compose topology natively, on one machine, without Docker.

The Sinch simulator, the proxy in front of it, the demo traffic (traffic.py, as `make demo`),
a real Prometheus running the repo's prometheus/prometheus.yml and rules, and, where Debian's
prometheus-alertmanager is installed, Alertmanager with the repo's alertmanager/alertmanager.yml
and a local "pager" that prints every page (alertmanager.yml pages the critical alerts; warnings
go to its `default` receiver, which notifies nobody). So the alerts fire for real, as in compose.

The repo's configs name compose services (`proxy:19880`, `alertmanager:9093`); this module
rewrites a copy of them for 127.0.0.1 ports (and absolute rule paths) under the work directory.
A target it cannot map is an error, so the two stacks cannot drift apart silently.
`--rate 0` sends no traffic at all: the tests drive the requests themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from sinch_sms_exporter.sim import traffic
from tools import demo
from tools.processes import ComponentError, child, wait_ready

PLAN = "STACKPLAN0123456789"
#: compose service name → the stack's component that plays it (rewritten to 127.0.0.1:port).
COMPOSE_SERVICES = ("proxy", "alertmanager", "prometheus", "localhost")
PLACEHOLDER_SUFFIX = ".invalid"  # alertmanager.yml's placeholder webhook host


class StackError(ComponentError):
    """Reported in one line; exit status 1."""


def find_repo(start: Path | None = None) -> Path:
    """The checkout whose prometheus/ and alertmanager/ configs to run: the working directory
    (`make stack` runs there), else the one this package lives in (an editable install)."""
    for candidate in (start or Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "prometheus" / "prometheus.yml").is_file():
            return candidate
    raise StackError("no prometheus/prometheus.yml here: run from the sinch-sms-exporter checkout (or give --repo)")


def _yaml() -> YAML:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    return yaml


def prometheus_config(
    repo: Path, addresses: dict[str, str], interval: float | None, with_alertmanager: bool
) -> dict[str, Any]:
    """The repo's prometheus.yml with every compose target mapped to `addresses`
    ({"proxy:19880": "127.0.0.1:8080", …}) and the rule files as absolute paths."""
    config_path = repo / "prometheus" / "prometheus.yml"
    config = _yaml().load(config_path.read_text()) or {}
    config["rule_files"] = [str((config_path.parent / f).resolve()) for f in config.get("rule_files", [])]
    if interval:
        config.setdefault("global", {}).update(scrape_interval=f"{interval:g}s", evaluation_interval=f"{interval:g}s")

    def mapped(targets: list[str]) -> list[str]:
        unknown = [t for t in targets if t not in addresses]
        if unknown:
            raise StackError(f"{config_path}: no native stand-in for target(s) {', '.join(unknown)}")
        return [addresses[t] for t in targets]

    if not with_alertmanager:
        config.pop("alerting", None)
    for alerting in (config.get("alerting") or {}).get("alertmanagers", []):
        for static in alerting.get("static_configs", []):
            static["targets"] = mapped(static["targets"])
    jobs = []
    for job in config.get("scrape_configs", []):
        targets = [t for static in job.get("static_configs", []) for t in static.get("targets", [])]
        if not with_alertmanager and all(t.split(":")[0] == "alertmanager" for t in targets):
            continue  # nothing plays that part here
        for static in job.get("static_configs", []):
            static["targets"] = mapped(static["targets"])
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(repo: Path, pager_url: str) -> dict[str, Any]:
    """The repo's alertmanager.yml, its placeholder webhook URLs pointing at the local pager."""
    config = _yaml().load((repo / "alertmanager" / "alertmanager.yml").read_text()) or {}
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            host = webhook.get("url", "").split("/")[2:3]
            if host and host[0].split(":")[0].endswith(PLACEHOLDER_SUFFIX):
                webhook["url"] = pager_url
    return config


class Pager:
    """A webhook receiver playing the paging system: prints each page and appends it
    (receiver, status, alert labels) to pages.jsonl."""

    def __init__(self, port: int, log: Path, echo: Callable[[str], None]) -> None:
        pager = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()
                with contextlib.suppress(ValueError):
                    pager.record(json.loads(body))

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.log, self.echo = log, echo
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, payload: dict[str, Any]) -> None:
        with self.lock, open(self.log, "a") as out:
            for alert in payload.get("alerts", []):
                labels = alert.get("labels", {})
                entry = {"receiver": payload.get("receiver"), "status": alert.get("status"), "labels": labels}
                out.write(json.dumps(entry) + "\n")
                where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
                self.echo(f"PAGE via {entry['receiver']}: {entry['status']} {labels.get('alertname')} ({where})")

    def __enter__(self) -> Pager:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_ports_free(ports: dict[str, int]) -> None:
    """Before starting anything: a taken port (Debian starts its own prometheus on 9090 and
    prometheus-alertmanager on 9093) is one line naming the flag, not a component's log.
    SO_REUSEADDR as the components' own binds (sinch-sms-proxy's check, mitmproxy, Prometheus):
    connections still closing (TIME_WAIT, a minute after `make demo`) do not make a port taken."""
    for flag, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise StackError(
                    f"port {port} is already in use: pick another with --{flag}"
                    + (" (or `systemctl stop prometheus prometheus-alertmanager`)" if port in (9090, 9093) else "")
                ) from None


def alertmanager_binary() -> str | None:
    """Debian names it prometheus-alertmanager; upstream's tarball, alertmanager."""
    return shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")


def firing_alerts(prometheus_port: int) -> list[str]:
    """`alertname{region}` of the alerts firing in Prometheus (its /api/v1/alerts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=5) as response:
        alerts = json.load(response)["data"]["alerts"]
    return sorted(
        f"{a['labels']['alertname']}{{{a['labels'].get('region', '')}}}" for a in alerts if a["state"] == "firing"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--repo", type=Path, help="checkout with prometheus/ and alertmanager/ (default: here)")
    add("--workdir", type=Path, help="configs, logs, TSDB (default: REPO/.run/stack, emptied first)")
    add("--simulator-port", type=int, default=9800)
    add("--listen-port", type=int, default=8080, help="the proxy")
    add("--callback-port", type=int, default=8090, help="the proxy's callback listener")
    add("--receiver-port", type=int, default=9810, help="the service's callback receiver")
    add(
        "--delivery-scenario",
        choices=("demo", "delivered", "failing"),
        default="demo",
        help="the simulator's delivery outcomes; failing: most messages fail and SinchSmsDeliveryFailureRate "
        "fires after its 10 minutes",
    )
    add("--metrics-port", type=int, default=19880, help="the proxy's /metrics")
    add("--prometheus-port", type=int, default=9090)
    add("--alertmanager-port", type=int, default=9093)
    add("--pager-port", type=int, default=19881, help="the local webhook receiver Alertmanager pages")
    add("--no-alertmanager", action="store_true", help="run without Alertmanager even where installed")
    add("--interval", type=float, help="scrape and evaluation interval in seconds (default: the config's)")
    add("--rate", type=float, default=20.0, help="demo requests per second (0: no traffic at all)")
    add("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    add("--report-every", type=float, default=15.0, help="seconds between status lines")
    return parser


def run(args: argparse.Namespace, echo: Callable[[str], None]) -> None:
    repo = (args.repo or find_repo()).resolve()
    prometheus = shutil.which("prometheus")
    if not prometheus:
        raise StackError("prometheus is not installed (Debian: apt-get install prometheus); `make demo` needs none")
    alertmanager = None if args.no_alertmanager else alertmanager_binary()
    workdir = (args.workdir or repo / ".run" / "stack").resolve()
    if args.workdir is None and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {
        "simulator-port": args.simulator_port,
        "listen-port": args.listen_port,
        "callback-port": args.callback_port,
        "receiver-port": args.receiver_port,
        "metrics-port": args.metrics_port,
        "prometheus-port": args.prometheus_port,
    }
    if alertmanager:
        ports.update({"alertmanager-port": args.alertmanager_port, "pager-port": args.pager_port})
    check_ports_free(ports)

    loopback = "127.0.0.1:{}".format
    addresses = {
        "proxy:19880": loopback(args.metrics_port),
        "localhost:9090": loopback(args.prometheus_port),
        "prometheus:9090": loopback(args.prometheus_port),
        "alertmanager:9093": loopback(args.alertmanager_port),
    }
    yaml = _yaml()
    with open(workdir / "prometheus.yml", "w") as out:
        yaml.dump(prometheus_config(repo, addresses, args.interval, alertmanager is not None), out)
    pager_url = f"http://127.0.0.1:{args.pager_port}/alertmanager"
    if alertmanager:
        with open(workdir / "alertmanager.yml", "w") as out:
            yaml.dump(alertmanager_config(repo, pager_url), out)

    proxy_url = f"http://127.0.0.1:{args.listen_port}"
    with contextlib.ExitStack() as stack:
        sim_command = demo.simulator_command(args.simulator_port, None, "--delivery-scenario", args.delivery_scenario)
        sim = stack.enter_context(child("simulator", sim_command, workdir))
        receiver = stack.enter_context(child("receiver", demo.receiver_command(args.receiver_port), workdir))
        proxy_command = demo.proxy_command(
            args.simulator_port,
            args.listen_port,
            args.metrics_port,
            *("--metrics-host", "127.0.0.1", "--confdir", str(workdir / "mitmproxy")),
            callbacks=(args.receiver_port, args.callback_port),
        )
        proxy = stack.enter_context(child("proxy", proxy_command, workdir))
        children = [sim, receiver, proxy]
        if alertmanager:
            stack.enter_context(Pager(args.pager_port, workdir / "pages.jsonl", echo))
            am = stack.enter_context(
                child(
                    "alertmanager",
                    [
                        alertmanager,
                        f"--config.file={workdir / 'alertmanager.yml'}",
                        f"--storage.path={workdir / 'alertmanager-data'}",
                        f"--web.listen-address=127.0.0.1:{args.alertmanager_port}",
                        "--cluster.listen-address=",
                    ],
                    workdir,
                )
            )
            children.append(am)
        prom = stack.enter_context(
            child(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{args.prometheus_port}",
                ],
                workdir,
            )
        )
        children.append(prom)

        wait_ready(sim, port=args.simulator_port)
        wait_ready(receiver, port=args.receiver_port)
        wait_ready(proxy, url=f"http://127.0.0.1:{args.metrics_port}/healthz")
        wait_ready(proxy, port=args.listen_port)
        wait_ready(proxy, port=args.callback_port)
        if alertmanager:
            wait_ready(am, url=f"http://127.0.0.1:{args.alertmanager_port}/-/ready")
        wait_ready(prom, url=f"http://127.0.0.1:{args.prometheus_port}/-/ready")

        echo(
            f"stack ready (configs and logs in {workdir}):\n"
            f"  proxy       {proxy_url}  → simulator :{args.simulator_port} (scenario demo, region us)\n"
            f"  callbacks   simulator → {demo.callback_url(args.callback_port)} → receiver :{args.receiver_port} "
            f"(delivery scenario {args.delivery_scenario})\n"
            f"  metrics     http://127.0.0.1:{args.metrics_port}/metrics\n"
            f"  prometheus  http://127.0.0.1:{args.prometheus_port}/alerts  (repo's rules, job sinch-sms-exporter)\n"
            + (
                f"  alertmanager http://127.0.0.1:{args.alertmanager_port}  (critical → pager: printed here, "
                f"{workdir / 'pages.jsonl'})\n"
                if alertmanager
                else "  alertmanager not installed (Debian: prometheus-alertmanager): alerts stay in Prometheus\n"
            )
            + "  grafana     none here: import dashboards/*.json into a Grafana with this Prometheus\n"
            f"  try: curl -si -H 'X-Sinch-Sim: 403:blocked_account' {proxy_url}/xms/v1/PLAN/batches\n"
            "Ctrl-C stops everything."
        )
        generator = None
        if args.rate > 0:
            demo.opening_round(proxy_url, PLAN)  # every answer once: every alert has data at once
            demo.inbound_round(args.simulator_port, args.callback_port)
            generator = demo.generator(proxy_url, args.rate, PLAN, callback_port=args.callback_port)
            stack.enter_context(_background(generator))
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C reaches only us: the children have their own group
            signal.signal(sig, lambda *_: stopping.set())
        started = last = time.monotonic()
        while not stopping.wait(0.5):
            for proc in children:
                proc.check()
            if args.duration and time.monotonic() - started >= args.duration:
                break
            if args.report_every and time.monotonic() - last >= args.report_every:
                last = time.monotonic()
                with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                    sent = f"answers received {generator.tally.snapshot()}; " if generator else ""
                    echo(f"{sent}alerts firing: {', '.join(firing_alerts(args.prometheus_port)) or '-'}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            echo(
                f"sinch_sms_responses_total by status and code:\n{demo.summary(f'http://127.0.0.1:{args.metrics_port}/metrics')}"
            )


@contextlib.contextmanager
def _background(generator: traffic.Generator) -> Iterator[None]:
    thread = threading.Thread(target=generator.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        generator.stop.set()
        thread.join(timeout=40)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args, lambda line: print(line, flush=True))
    except ComponentError as exc:
        print(f"make stack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
