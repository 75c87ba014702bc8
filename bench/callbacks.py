"""The callback mix: Sinch's delivery reports through the callback listener to a fast receiver.

One delivery report per message (three with `per_recipient`) means callbacks can outnumber
API calls. Here hey plays Sinch, posting a signed recipient delivery report, and nginx plays
the service's receiver (`return 200`, bench/upstream.py). Two ways to reach it, alternating:

    mitmdump         hey → mitmdump --mode reverse:http://127.0.0.1:NGINX@PORT -q → nginx
    sinch-sms-proxy  hey → sinch-sms-proxy --callback-upstream http://127.0.0.1:NGINX@PORT → nginx

Every run through sinch-sms-proxy is a count check: the increase of sinch_sms_callbacks_total
and of sinch_sms_delivery_reports_total{status="delivered",code="0"} must equal hey's 200s.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import loadgen, procs, results, upstream
from bench.results import SINCH, Check, Run

MIX = "callback"
#: Sinch's signature headers (values of the SDKs' test vector): carried, never checked here.
HEADERS = (
    "X-Sinch-Webhook-Signature: ZoHei66PPN/kZjw7hFVfGhJOnml3iGNCMWoyQVcE5o0=",
    "X-Sinch-Webhook-Signature-Nonce: 01JHFFHWYY7HSS4FWTMDTQEK8V",
    "X-Sinch-Webhook-Signature-Timestamp: 1736760161",
    "X-Sinch-Webhook-Signature-Algorithm: HmacSHA256",
)


def counted(metrics_port: int) -> tuple[float, float, float]:
    """(callbacks answered 200, delivered reports, callback errors) on a proxy's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    ok = delivered = errors = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "sinch_sms_callbacks_total" and s.labels == {
                "type": "recipient_delivery_report_sms",
                "status": "200",
            }:
                ok += s.value
            elif s.name == "sinch_sms_delivery_reports_total" and s.labels.get("status") == "delivered":
                delivered += s.value if s.labels.get("code") == "0" else 0.0
            elif s.name == "sinch_sms_callback_errors_total":
                errors += s.value
    return ok, delivered, errors


def start_callback_proxy(nginx_url: str, home: Path, cpus: str | None) -> procs.Target:
    """sinch-sms-proxy with its defaults and one callback listener in front of nginx; the
    Target's port is the callback listener's."""
    callback_port = procs.free_port()
    proxy = procs.start_sinch_proxy(
        nginx_url, home, cpus,
        "--callback-upstream", f"{nginx_url}@{callback_port}", "--callback-listen-host", "127.0.0.1",
        name="callback-proxy",
    )  # fmt: skip
    procs.wait_for_port(callback_port, proxy.popen)
    return procs.Target(SINCH, proxy.popen, callback_port, proxy.log_path, proxy.metrics_port)


def measure(target: procs.Target, concurrency: int, duration: float, cpus: str | None) -> Run:
    before = counted(target.metrics_port) if target.metrics_port else None
    cpu_before = procs.cpu_seconds(target.pid)
    result = loadgen.run_hey(
        target.url(upstream.CALLBACK_PATH),
        concurrency=concurrency,
        duration=duration,
        cpus=cpus,
        body=upstream.CALLBACK_BODY,
        headers=HEADERS,
    )
    cpu = procs.cpu_seconds(target.pid) - cpu_before
    problems = []
    if result.errors:
        problems.append(f"{result.error_count} errors ({next(iter(result.errors))})")
    if set(result.statuses) - {200}:
        problems.append(f"unexpected statuses {sorted(set(result.statuses) - {200})}")
    mismatch = []
    if before is not None and target.metrics_port:
        after = counted(target.metrics_port)
        got = result.statuses.get(200, 0)
        ok, delivered, errors = (a - b for a, b in zip(after, before, strict=True))
        if ok != got:
            mismatch.append(f"callbacks counted {ok:,.0f}, hey {got:,}")
        if delivered != got:
            mismatch.append(f"delivered reports counted {delivered:,.0f}, hey {got:,}")
        if errors:
            mismatch.append(f"{errors:,.0f} callback errors counted")
    return Run(
        target.name, MIX, concurrency, result.rps, result.latency(50), result.latency(95), result.latency(99),
        result.requests, cpu, procs.rss_bytes(target.pid), "; ".join(problems), "; ".join(mismatch),
    )  # fmt: skip


def phase(
    nginx_url: str, home: Path, pairs: int, concurrency: int, duration: float, load_cpus, proxy_cpus,
    echo: Callable[[str], None] = print,
) -> list[Run]:  # fmt: skip
    """Alternating runs of bare mitmdump and sinch-sms-proxy's callback listener."""
    targets = [procs.start_mitmdump(nginx_url, home, proxy_cpus), start_callback_proxy(nginx_url, home, proxy_cpus)]
    runs: list[Run] = []
    try:
        for target in targets:  # warm-up, not reported
            measure(target, concurrency, 1, load_cpus)
        for pair in range(pairs):
            for target in targets:
                run = measure(target, concurrency, duration, load_cpus)
                runs.append(run)
                note = "".join(f"  !! {p}" for p in (run.problems, run.mismatch and f"count: {run.mismatch}") if p)
                echo(f"  {MIX:<8} c={concurrency} #{pair + 1} {target.name:<19} {run.rps:>9,.0f} req/s "
                     f"p99 {run.p99 * 1000:>6.1f} ms  {run.cpu_per_1k:.3f} CPU s/1k{note}")  # fmt: skip
    finally:
        for target in targets:
            target.stop()
    return runs


def table(runs: Sequence[Run], concurrency: int) -> str:
    lines = [
        "| mix | target | req/s (min-max) | p50 ms | p99 ms | CPU s / 1k req |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    by_target = results.group(runs, MIX, concurrency)
    for target, runs_ in by_target.items():
        rps = [r.rps for r in runs_]
        p50, p99 = (results.median(runs_, key) * 1000 for key in (lambda r: r.p50, lambda r: r.p99))
        lines.append(
            f"| {MIX} | {target} | {results.median(runs_, lambda r: r.rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) "
            f"| {p50:.1f} | {p99:.1f} | {results.median(runs_, lambda r: r.cpu_per_1k):.3f} |"
        )
    if SINCH in by_target and "mitmdump" in by_target:
        ratio = results.ratios(by_target[SINCH], by_target["mitmdump"])
        lines.append(f"| {MIX} | **ratio {SINCH} / mitmdump** | **{ratio['rps']:.2f}x** | {ratio['p50']:.2f}x "
                     f"| {ratio['p99']:.2f}x | |")  # fmt: skip
    return "\n".join(lines)


def checks(runs: Sequence[Run], concurrency: int) -> list[Check]:
    by_target = results.group(runs, MIX, concurrency)
    if SINCH not in by_target or "mitmdump" not in by_target:
        return [Check(f"req/s >= {results.MIN_RPS_RATIO:g}x bare mitmdump", f"{MIX} mix", "not measured", None)]
    ratio = results.ratios(by_target[SINCH], by_target["mitmdump"])
    return [
        Check(f"req/s >= {results.MIN_RPS_RATIO:g}x bare mitmdump", f"{MIX} mix", f"{ratio['rps']:.2f}x",
              ratio["rps"] >= results.MIN_RPS_RATIO),
        Check("p99 no worse than bare mitmdump", f"{MIX} mix", f"{ratio['p99']:.2f}x",
              ratio["p99"] <= results.MAX_P99_RATIO),
    ]  # fmt: skip
