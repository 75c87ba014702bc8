"""`make demo`: the proxy in front of the Sinch simulator, with realistic traffic through it.

Starts `sinch-sms-simulator --scenario demo` and `sinch-sms-proxy` as real processes, sends
one request for every answer of the catalog, one dropped connection and one call to a path
outside the API (so every code, an upstream error and a 404 show up at once), then a steady
mix of traffic, and prints where to look and a summary of /metrics every few seconds.

It runs until Ctrl-C (SIGINT) or SIGTERM, or for --duration seconds; either way it prints a
last summary, stops the proxy and the simulator, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sinch_sms_exporter import simulator, traffic
from sinch_sms_exporter.processes import ComponentError, child, wait_ready


def summary(metrics_url: str) -> str:
    """One line per (status, code) of sinch_sms_responses_total, plus upstream errors."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    by_answer: dict[tuple[str, str], float] = {}
    errors: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sinch_sms_responses_total":
                key = (s.labels["status"], s.labels["code"])
                by_answer[key] = by_answer.get(key, 0) + s.value
            elif s.name == "sinch_sms_upstream_errors_total":
                errors[s.labels["reason"]] = errors.get(s.labels["reason"], 0) + s.value
    lines = [
        f"  {status} {code or '(no code)':<34} {count:>7.0f}" for (status, code), count in sorted(by_answer.items())
    ]
    lines += [f"  upstream error {reason:<25} {count:>7.0f}" for reason, count in sorted(errors.items())]
    return "\n".join(lines)


#: Sent before the steady traffic: every catalog answer, a dropped connection (an upstream
#: error), and (below) one call to a path outside the API, which the simulator answers 404.
FIRST_ROUND: tuple[str, ...] = (*simulator.CATALOG_ANSWERS, "drop")
PLAN = "DEMOPLAN0123456789"


def _unknown_path(proxy_url: str) -> None:
    """One GET to a path the API does not have (a typo in a service's client): a 404, no body."""
    port = int(proxy_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/xms/v1/{PLAN}/batchs", headers={"Authorization": f"Bearer {traffic.FAKE_TOKEN}"})
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--metrics-port", type=int, default=19880)
    parser.add_argument("--simulator-port", type=int, default=9800)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between summaries of /metrics")
    parser.add_argument("--seed", type=int, help="random seed of the simulator's scenario and the traffic")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration < 0 or args.report_every <= 0:
        parser.error("--rate and --report-every must be > 0, --duration >= 0")

    proxy_url = f"http://127.0.0.1:{args.listen_port}"
    metrics_url = f"http://127.0.0.1:{args.metrics_port}/metrics"
    python = sys.executable
    workdir = Path(tempfile.mkdtemp(prefix="sinch-demo-"))
    generator: traffic.Generator | None = None

    def stop(signum: int, _frame) -> None:
        """SIGINT/SIGTERM: end the traffic (then the last summary, then the components stop);
        before the traffic runs, unwind the start-up. A second signal changes nothing."""
        signal.signal(signum, signal.SIG_IGN)
        if generator is None:
            raise KeyboardInterrupt
        generator.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        with (
            child(
                "simulator",
                [
                    python,
                    "-m",
                    "sinch_sms_exporter.simulator",
                    "--port",
                    str(args.simulator_port),
                    "--scenario",
                    "demo",
                    *(["--seed", str(args.seed)] if args.seed is not None else []),
                ],
                workdir,
            ) as sim,
            child(
                "proxy",
                [
                    python,
                    "-m",
                    "sinch_sms_exporter.cli",
                    "--upstream",
                    f"http://127.0.0.1:{args.simulator_port}",
                    "--region",
                    "us",
                    "--listen-port",
                    str(args.listen_port),
                    "--metrics-port",
                    str(args.metrics_port),
                    "--upstream-timeout",
                    "10",
                ],
                workdir,
            ) as proxy,
        ):
            wait_ready(sim, port=args.simulator_port)
            wait_ready(proxy, url=f"http://127.0.0.1:{args.metrics_port}/healthz")
            wait_ready(proxy, port=args.listen_port)
            for answer in FIRST_ROUND:  # every catalog answer once, right away
                traffic.send_one(proxy_url, PLAN, answer)
            _unknown_path(proxy_url)
            print(
                f"\nDemo running. The proxy: {proxy_url} (upstream: the simulator on :{args.simulator_port})\n"
                f"  logs:      {workdir}/proxy.log, {workdir}/simulator.log\n"
                f"  metrics:   curl -s {metrics_url} | grep ^sinch_sms\n"
                f"  try:       curl -si -H 'X-Sinch-Sim: 403:blocked_account' {proxy_url}/xms/v1/PLAN/batches\n"
                f"  Prometheus: scrape 127.0.0.1:{args.metrics_port}; load prometheus/alerts.yml; import dashboards/\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
            generator = traffic.Generator(proxy_url, PLAN, args.rate, 4, None, args.seed)

            def report(_: dict) -> None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    print(f"sinch_sms_responses_total by status and code:\n{summary(metrics_url)}\n", flush=True)

            generator.run(args.duration, args.report_every, report)
            report({})
            print("make demo: stopping the proxy and the simulator", flush=True)
    except ComponentError as exc:
        print(f"make demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
