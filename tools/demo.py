"""`make demo`: the proxy in front of the Sinch simulator, with realistic traffic through it.

Starts `sinch-sms-simulator --scenario demo`, a callback receiver standing in for the service's
(`sinch-sms-receiver`: mostly 200, 5 % 500 so Sinch's retries show) and `sinch-sms-proxy` with a
callback listener in front of it, as real processes. Batches ask for delivery reports at the
callback listener, so the simulator calls back through the proxy as Sinch would. It sends
an opening round (every answer of the catalog, an upstream fault, a client abort and a call to a
path outside the API, so every code, a 404 and every dashboard panel show up at once), then a
steady mix of traffic (traffic.py), and prints where to look and a summary of /metrics every
few seconds.

It runs until Ctrl-C (SIGINT) or SIGTERM, or for --duration seconds; either way it prints a
last summary, stops the proxy and the simulator, removes its work directory (their logs) and
exits 0. After a component failed, the logs are kept and their directory named.

What the demo runs is defined here once (SIMULATOR_ARGS, PROXY_ARGS, callback_args,
receiver_command, opening_round, inbound_round, generator): `make stack` and the dashboards'
test (tests/monitoring/test_dashboards.py) run the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.sim import simulator, traffic
from tools.processes import ComponentError, child, wait_ready

PLAN = "DEMOPLAN0123456789"
RATE = 20.0
CONCURRENCY = 4
#: How the demo starts the simulator and the proxy (besides ports and upstreams).
#: Callback delays at a fifth of Sinch's: reports after 0.6 s, retries after 1 s, 2 s, 4 s, …
SIMULATOR_ARGS: tuple[str, ...] = ("--scenario", "demo", "--time-scale", "0.2")
#: The receiver's share of callbacks answered 500 (below SinchSmsCallbackReceiverFailing's 10 %).
RECEIVER_FAIL_SHARE = 0.05
#: Where the service's receiver listens, and the path Sinch is told to call (the callback URL).
CALLBACK_PATH = "/sinch/callbacks"
PROXY_ARGS: tuple[str, ...] = ("--upstream-timeout", "10")
#: The opening round's answers: every catalog answer, then an upstream fault (the simulator
#: closes the connection without answering: the service gets a 502, the proxy counts `closed`).
OPENING_ANSWERS: tuple[str, ...] = (*simulator.CATALOG_ANSWERS, "drop")


def opening_round(proxy_url: str, plan: str = PLAN) -> dict[str, str]:
    """Every answer of OPENING_ANSWERS once, one request the client abandons (a client abort)
    and one to a path outside the API: what each request got (status, "error" or
    traffic.ABANDONED)."""
    got = {answer: traffic.send_one(proxy_url, plan, answer) for answer in OPENING_ANSWERS}
    got["client abort"] = traffic.abandon_one(proxy_url, plan)
    # A typo in a service's client: a path the API does not have, a 404 with no body.
    got["unknown path"] = traffic.send_one(proxy_url, plan, None, endpoint="batchs")
    return got


def simulator_command(port: int, seed: int | None = None, *extra: str) -> list[str]:
    """The demo's simulator, as a command line."""
    seeded = ["--seed", str(seed)] if seed is not None else []
    return [
        sys.executable, "-m", "sinch_sms_exporter.sim.simulator", "--port", str(port),
        *SIMULATOR_ARGS, *seeded, *extra,
    ]  # fmt: skip


def receiver_command(port: int, seed: int | None = None) -> list[str]:
    """The service's callback receiver the demo stands in, as a command line."""
    seeded = ["--seed", str(seed)] if seed is not None else []
    return [
        sys.executable, "-m", "sinch_sms_exporter.sim.receiver", "--port", str(port),
        "--fail-share", str(RECEIVER_FAIL_SHARE), *seeded,
    ]  # fmt: skip


def callback_args(receiver_port: int, callback_port: int) -> list[str]:
    """The proxy's flags for the demo's callback listener: on loopback at `callback_port`, in
    front of the receiver at `receiver_port`."""
    return [
        "--callback-upstream", f"http://127.0.0.1:{receiver_port}@{callback_port}",
        "--callback-listen-host", "127.0.0.1",
    ]  # fmt: skip


def proxy_command(
    simulator_port: int, listen_port: int, metrics_port: int, *extra: str, callbacks: tuple[int, int] | None = None
) -> list[str]:
    """The demo's proxy in front of the simulator (region us), as a command line; `callbacks`
    (receiver port, callback listener port) adds the callback listener on loopback."""
    listener = callback_args(*callbacks) if callbacks is not None else []
    return [
        sys.executable, "-m", "sinch_sms_exporter.cli",
        "--upstream", f"http://127.0.0.1:{simulator_port}", "--region", "us",
        "--listen-port", str(listen_port), "--metrics-port", str(metrics_port),
        *PROXY_ARGS, *listener, *extra,
    ]  # fmt: skip


def callback_url(callback_port: int) -> str:
    """The callback URL batches give Sinch: the proxy's callback listener."""
    return f"http://127.0.0.1:{callback_port}{CALLBACK_PATH}"


def inbound_round(simulator_port: int, callback_port: int) -> None:
    """One inbound message of each type, sent by the simulator through the callback listener."""
    for kind in labels.INBOUND_TYPES:
        order = json.dumps({"url": callback_url(callback_port), "type": kind, "count": 1}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{simulator_port}/_sim/inbound", data=order, method="POST")
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5):
            pass


def generator(
    proxy_url: str, rate: float = RATE, plan: str = PLAN, seed: int | None = None, callback_port: int | None = None
) -> traffic.Generator:
    """The demo's steady traffic: the realistic mix of calls, the simulator's scenario choosing
    the answers, and traffic.ABORT_SHARE of the requests abandoned by an impatient client;
    batches ask for delivery reports at the callback listener, if there is one."""
    url = callback_url(callback_port) if callback_port else None
    return traffic.Generator(proxy_url, plan, rate, CONCURRENCY, None, seed, callback_url=url)


def summary(metrics_url: str) -> str:
    """One line per (status, code) of sinch_sms_responses_total, plus upstream errors and
    client aborts."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    by_answer: dict[tuple[str, str], float] = {}
    errors: dict[str, float] = {}
    aborts = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sinch_sms_responses_total":
                key = (s.labels["status"], s.labels["code"])
                by_answer[key] = by_answer.get(key, 0) + s.value
            elif s.name == "sinch_sms_upstream_errors_total":
                errors[s.labels["reason"]] = errors.get(s.labels["reason"], 0) + s.value
            elif s.name == "sinch_sms_client_aborts_total":
                aborts += s.value
    delivery: dict[str, float] = {}
    callbacks: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sinch_sms_delivery_reports_total":
                delivery[s.labels["status"]] = delivery.get(s.labels["status"], 0) + s.value
            elif s.name == "sinch_sms_callbacks_total":
                callbacks[s.labels["status"]] = callbacks.get(s.labels["status"], 0) + s.value
    lines = [
        f"  {status} {code or '(no code)':<34} {count:>7.0f}" for (status, code), count in sorted(by_answer.items())
    ]
    if callbacks:
        lines.append(
            "  callbacks by the receiver's answer: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(callbacks.items()))
        )
    if delivery:
        lines.append("  messages by delivery status: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(delivery.items())))
    lines += [f"  upstream error {reason:<25} {count:>7.0f}" for reason, count in sorted(errors.items())]
    if aborts:
        lines.append(f"  client aborts {'':<26} {aborts:>7.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, default=8080)
    parser.add_argument("--metrics-port", type=int, default=19880)
    parser.add_argument("--simulator-port", type=int, default=9800)
    parser.add_argument("--callback-port", type=int, default=8090, help="the proxy's callback listener")
    parser.add_argument("--receiver-port", type=int, default=9810, help="the service's callback receiver")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between summaries of /metrics")
    parser.add_argument("--seed", type=int, help="random seed of the simulator's scenario and the traffic")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration < 0 or args.report_every <= 0:
        parser.error("--rate and --report-every must be > 0, --duration >= 0")

    proxy_url = f"http://127.0.0.1:{args.listen_port}"
    metrics_url = f"http://127.0.0.1:{args.metrics_port}/metrics"
    workdir = Path(tempfile.mkdtemp(prefix="sinch-demo-"))
    steady: traffic.Generator | None = None

    def stop(signum: int, _frame) -> None:
        """SIGINT/SIGTERM: end the traffic (then the last summary, then the components stop);
        before the traffic runs, unwind the start-up. A second signal changes nothing."""
        signal.signal(signum, signal.SIG_IGN)
        if steady is None:
            raise KeyboardInterrupt
        steady.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        with (
            child("simulator", simulator_command(args.simulator_port, args.seed), workdir) as sim,
            child("receiver", receiver_command(args.receiver_port, args.seed), workdir) as receiver,
            child(
                "proxy",
                proxy_command(
                    args.simulator_port,
                    args.listen_port,
                    args.metrics_port,
                    callbacks=(args.receiver_port, args.callback_port),
                ),
                workdir,
            ) as proxy,
        ):
            wait_ready(sim, port=args.simulator_port)
            wait_ready(receiver, port=args.receiver_port)
            wait_ready(proxy, url=f"http://127.0.0.1:{args.metrics_port}/healthz")
            wait_ready(proxy, port=args.listen_port)
            wait_ready(proxy, port=args.callback_port)
            opening_round(proxy_url)  # every catalog answer, a fault, an abort and a 404, right away
            inbound_round(args.simulator_port, args.callback_port)
            print(
                f"\nDemo running. The proxy: {proxy_url} (upstream: the simulator on :{args.simulator_port})\n"
                f"  callbacks: the simulator → {callback_url(args.callback_port)} (the callback listener) → "
                f"the receiver on :{args.receiver_port}\n"
                f"  logs:      {workdir}/proxy.log, {workdir}/simulator.log (removed when the demo ends)\n"
                f"  metrics:   curl -s {metrics_url} | grep ^sinch_sms\n"
                f"  try:       curl -si -H 'X-Sinch-Sim: 403:blocked_account' {proxy_url}/xms/v1/PLAN/batches\n"
                f"  Prometheus: scrape 127.0.0.1:{args.metrics_port}; load prometheus/alerts.yml; import dashboards/\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
            steady = generator(proxy_url, args.rate, seed=args.seed, callback_port=args.callback_port)

            def report(_: dict) -> None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    print(f"sinch_sms_responses_total by status and code:\n{summary(metrics_url)}\n", flush=True)

            steady.run(args.duration, args.report_every, report)
            report({})
            print("make demo: stopping the proxy, the receiver and the simulator", flush=True)
    except ComponentError as exc:
        print(f"make demo: error: {exc}\n(logs kept in {workdir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
