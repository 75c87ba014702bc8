"""`make bench`: throughput, latency, CPU and memory of sinch-sms-proxy against bare mitmdump.

One run on this machine, real processes only: Debian's `hey` load generator, Debian's
nginx-light as a fast upstream (bench/upstream.py), and three ways to reach it:

    direct           hey → nginx
    mitmdump         hey → mitmdump --mode reverse:http://127.0.0.1:NGINX@PORT -q → nginx
    sinch-sms-proxy  hey → sinch-sms-proxy --upstream http://127.0.0.1:NGINX@PORT → nginx

two mixes (all-success: 201 + JSON; all-error: 403 `{"code":"blocked_account",…}`, every
answer parsed), runs alternating between the three (A B C A B C…), medians over the pairs,
and the ratios sinch-sms-proxy / mitmdump from the same run. Then: the latency each proxy
adds over direct at concurrency 1, the callback mix (bench/callbacks.py: Sinch's recipient
delivery reports through sinch-sms-proxy's callback listener, or bare mitmdump, to nginx as
the receiver), the cost of a /metrics scrape with a full set of series, RSS of a fresh
proxy after 10k and 200k requests, the addon's own µs per answer, and a py-spy profile of
sinch-sms-proxy under load (bench/hotspots.py; skipped without py-spy).

Every run through sinch-sms-proxy is also a count check: its /metrics before and after,
and the increase of sinch_sms_responses_total by status and code must equal hey's status
code distribution (bench/counts.py). The report ends with a PASS/FAIL line per target of
issue 5 (bench/results.py). Exit status: 1 for a measurement error (hey errors, statuses
nginx never sends, a count mismatch), else 0; a missed target is reported, and changes the
exit status (to 2) only with --fail-on-targets.

    .venv/bin/python -m bench.run [--pairs 5] [--duration 3] [--rss-requests 200000] …

The machine is shared and small: numbers are noisy, which is why only medians of
alternating runs and ratios within one run are reported. With two or more CPUs, the load
side (hey and nginx) is pinned to CPU 0 and the proxies to CPU 1 (taskset), so a proxy
never competes with the load generator for its core; --no-pin turns that off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench import callbacks, counts, hotspots, loadgen, microbench, procs, results, scrape, upstream
from bench.results import DIRECT, SINCH, Run

MIXES: dict[str, tuple[str, int]] = {
    "success": (upstream.SUCCESS_PATH, results.MIX_ANSWERS["success"][0]),
    "error": (upstream.ERROR_PATH, results.MIX_ANSWERS["error"][0]),
}
#: The code nginx's answer of each status carries (what the proxy must count it under).
CODES: dict[int, str] = dict(results.MIX_ANSWERS.values())
SINCH_OPTIMIZED = f"{SINCH} -O"
RSS_CHECKPOINTS = (10_000, 50_000, 100_000, 150_000, 200_000)


def measure(target: procs.Target, mix: str, concurrency: int, duration: float, cpus: str | None) -> Run:
    """One hey run; for a sinch-sms-proxy, also the count check: /metrics before and after."""
    path, status = MIXES[mix]
    before = counts.read(target.metrics_port) if target.metrics_port else None
    cpu_before = procs.cpu_seconds(target.pid)
    result = loadgen.run_hey(target.url(path), concurrency=concurrency, duration=duration, cpus=cpus)
    cpu = procs.cpu_seconds(target.pid) - cpu_before
    problems = []
    if result.errors:
        problems.append(f"{result.error_count} errors ({next(iter(result.errors))})")
    if set(result.statuses) - {status}:
        problems.append(f"unexpected statuses {sorted(set(result.statuses) - {status})}")
    if not result.requests:
        raise RuntimeError(f"{target.name}: no answers at all: {problems}")
    mismatch = []
    if before is not None and target.metrics_port:
        after = counts.read(target.metrics_port)
        counted = results.increase(before.responses, after.responses)
        mismatch = results.count_problems(result.statuses, counted, CODES, after.failures - before.failures)
    return Run(
        target.name, mix, concurrency, result.rps, result.latency(50), result.latency(95), result.latency(99),
        result.requests, cpu, procs.rss_bytes(target.pid), "; ".join(problems), "; ".join(mismatch),
    )  # fmt: skip


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --- phases --------------------------------------------------------------------------------


def load_phase(targets: list[procs.Target], args: argparse.Namespace, load_cpus: str | None) -> list[Run]:
    runs: list[Run] = []
    for mix in MIXES:
        for target in targets:  # warm-up, not reported: connections, caches, label children
            measure(target, mix, args.concurrency, 1, load_cpus)
        for pair in range(args.pairs):
            for target in targets:
                run = measure(target, mix, args.concurrency, args.duration, load_cpus)
                runs.append(run)
                note = "".join(f"  !! {p}" for p in (run.problems, run.mismatch and f"count: {run.mismatch}") if p)
                print(f"  {mix:<7} c={args.concurrency} #{pair + 1} {target.name:<19} {run.rps:>9,.0f} req/s "
                      f"p99 {_ms(run.p99):>6} ms  {run.cpu_per_1k:.3f} CPU s/1k{note}", flush=True)  # fmt: skip
    for mix in MIXES:
        for pair in range(args.pairs):
            for target in targets:
                run = measure(target, mix, 1, args.latency_duration, load_cpus)
                runs.append(run)
                note = "".join(f"  !! {p}" for p in (run.problems, run.mismatch and f"count: {run.mismatch}") if p)
                print(f"  {mix:<7} c=1 #{pair + 1} {target.name:<19} p50 {_ms(run.p50):>5} ms{note}", flush=True)
    return runs


def rss_phase(
    nginx_url: str, home: Path, args: argparse.Namespace, load_cpus, proxy_cpus
) -> tuple[list[tuple[int, int]], list[str]]:
    """A fresh sinch-sms-proxy; RSS after each checkpoint of requests (success and error alternating).

    Also the count check over the whole phase: what the proxy counted against hey's answers."""
    proxy = procs.start_sinch_proxy(nginx_url, home, proxy_cpus, name="rss-proxy")
    points = [(0, procs.rss_bytes(proxy.pid))]
    received: Counter[int] = Counter()
    errors = 0
    try:
        checkpoints = sorted({c for c in RSS_CHECKPOINTS if c < args.rss_requests} | {args.rss_requests})
        sent, turn, c = 0, 0, args.concurrency
        for checkpoint in checkpoints:
            while sent < checkpoint:
                # hey sends n // c requests per worker: ask for whole rounds, at most 10k per run.
                n = max(c, min(10_000, checkpoint - sent) // c * c)
                path = MIXES[("success", "error")[turn % 2]][0]
                result = loadgen.run_hey(proxy.url(path), concurrency=c, requests=n, cpus=load_cpus)
                sent += result.requests + result.error_count
                received.update(result.statuses)
                errors += result.error_count
                turn += 1
            points.append((sent, procs.rss_bytes(proxy.pid)))
            print(f"  rss after {sent:>7,} requests: {points[-1][1] / 2**20:.1f} MiB", flush=True)
        assert proxy.metrics_port
        counted = counts.read(proxy.metrics_port)
    finally:
        proxy.stop()
    problems = results.count_problems(received, counted.responses, CODES, counted.failures)
    if errors:
        problems.append(f"hey: {errors} errors")
    if set(received) - set(CODES):
        problems.append(f"unexpected statuses {sorted(set(received) - set(CODES))}")
    return points, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="alternating rounds per mix (medians over them)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per hey run")
    parser.add_argument("--concurrency", type=int, default=32, help="hey workers (connections) under load")
    parser.add_argument("--latency-duration", type=float, default=1.5, help="seconds per concurrency-1 run")
    parser.add_argument("--rss-requests", type=int, default=200_000, help="requests through a fresh proxy (0: skip)")
    parser.add_argument("--no-scrape", action="store_true", help="skip the /metrics scrape measurement")
    parser.add_argument("--no-callbacks", action="store_true", help="skip the callback mix")
    parser.add_argument("--no-microbench", action="store_true", help="skip the in-process micro-benchmark")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the proxy under load")
    parser.add_argument("--no-pin", action="store_true", help="do not pin load and proxies to separate CPUs")
    parser.add_argument(
        "--python-optimize",
        action="store_true",
        help=f"also run '{SINCH_OPTIMIZED}': sinch-sms-proxy with PYTHONOPTIMIZE=1 (mitmproxy's debug checks off)",
    )
    parser.add_argument(
        "--fail-on-targets",
        action="store_true",
        help="exit 2 when a target of issue 5 is missed (default: printed as FAIL, exit 0)",
    )
    parser.add_argument("--json", type=Path, help="also write every run's numbers to this file")
    args = parser.parse_args(argv)

    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
    load_cpus, proxy_cpus = ("0", "1") if pin else (None, None)
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="sinch-bench-"))
    nginx_port = procs.free_port()
    nginx = procs.Target(DIRECT, upstream.start_nginx(home / "nginx", nginx_port, load_cpus), nginx_port)
    targets = [nginx]
    report: dict = {"argv": sys.argv[1:], "pinned": bool(pin)}
    try:
        procs.wait_for_port(nginx_port, nginx.popen)
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        targets.append(procs.start_mitmdump(nginx_url, home, proxy_cpus))
        targets.append(procs.start_sinch_proxy(nginx_url, home, proxy_cpus))
        if args.python_optimize:
            optimized = {"PYTHONOPTIMIZE": "1"}
            targets.append(procs.start_sinch_proxy(nginx_url, home, proxy_cpus, name=SINCH_OPTIMIZED, env=optimized))
        print(f"bench: {os.cpu_count()} CPUs, {'hey+nginx on CPU 0, proxies on CPU 1' if pin else 'not pinned'}; "
              f"mitmdump: {' '.join(procs.mitmdump_argv(nginx_url, targets[1].port, Path('CONFDIR'))[1:])}",
              flush=True)  # fmt: skip
        runs = load_phase(targets, args, load_cpus)
        for target in targets[1:]:
            target.stop()
        callback_runs = []
        if not args.no_callbacks:
            callback_runs = callbacks.phase(
                nginx_url, home, args.pairs, args.concurrency, args.duration, load_cpus, proxy_cpus,
                lambda line: print(line, flush=True),
            )  # fmt: skip
        runs += callback_runs
        report["runs"] = [asdict(r) for r in runs]
        rss, rss_problems = rss_phase(nginx_url, home, args, load_cpus, proxy_cpus) if args.rss_requests else ([], [])
        report["rss"] = rss
        scraped = scrape.measure(home, proxy_cpus) if not args.no_scrape else None
        micro = microbench.measure() if not args.no_microbench else []
        profiles = {}
        if not args.no_profile and hotspots.py_spy():
            try:
                profiles = {mix: hotspots.record(mix, 10, 250, args.concurrency, bool(pin)) for mix in MIXES}
            except SystemExit as exc:  # e.g. no ptrace rights: the measurements above still count
                print(f"bench: no profile: {exc}", flush=True)
        elif not args.no_profile:
            print("bench: no py-spy (.tools/bin/pip install py-spy): no profile", flush=True)
    finally:
        for target in targets:
            target.stop()
    elapsed = time.monotonic() - started

    rounds = f"{args.pairs} alternating rounds of {args.duration:g} s; medians"
    print(f"\n## Under load (hey -c {args.concurrency}, {rounds})\n")
    print(results.load_table(runs, args.concurrency))
    print(f"\n## Concurrency 1 (hey -c 1, {args.pairs} rounds of {args.latency_duration:g} s; medians)\n")
    print(results.latency_table(runs))
    if callback_runs:
        print(f"\n## Callbacks: recipient delivery reports to a receiver (hey -c {args.concurrency}, {rounds})\n")
        print(callbacks.table(callback_runs, args.concurrency))
    if rss:
        print("\n## sinch-sms-proxy RSS (fresh process, success and error alternating)\n")
        print(" | ".join(f"{n:,} req: {b / 2**20:.1f} MiB" for n, b in rss))
    if scraped:
        report["scrape"] = asdict(scraped)
        print(f"\n## /metrics with a full set of series ({scraped.requests:,} requests through the proxy)\n")
        print(scrape.summary(scraped))
    if micro:
        report["microbench"] = [asdict(m) for m in micro]
        print("\n## The addon in-process (µs per answer, median of 7 repeats)\n")
        for m in micro:
            print(f"{m.name:<58} {m.microseconds:6.2f}")
    for mix, prof in profiles.items():
        report.setdefault("profiles", {})[mix] = asdict(prof)
        print(f"\n## Profile of sinch-sms-proxy under load, {mix} mix\n")
        print(hotspots.report(prof, mix, 12))

    measured = [r for r in runs if r.target.startswith(SINCH)]
    print("\n## Count check: what sinch-sms-proxy counted against what hey received\n")
    print(f"{len(measured)} runs through sinch-sms-proxy, {sum(r.requests for r in measured):,} answers: "
          f"{sum(1 for r in measured if r.mismatch)} mismatches", flush=True)  # fmt: skip
    for r in measured:
        if r.mismatch:
            print(f"!! {r.target} {r.mix} c={r.concurrency}: {r.mismatch}")
    if rss:
        print(f"RSS phase, {rss[-1][0]:,} requests: {'; '.join(rss_problems) or 'every answer counted'}")
    if scraped:
        print(f"scrape phase, {scraped.requests:,} requests: {'; '.join(scraped.problems) or 'every series made'}")

    per_answer = {m.name.split(":")[0]: m.microseconds for m in micro if m.name.endswith("responseheaders+response")}
    checks = results.target_checks(runs, args.concurrency, rss, per_answer)
    if not args.no_callbacks:
        checks += callbacks.checks(callback_runs, args.concurrency)
    report["targets"] = [asdict(c) for c in checks]
    print("\n## Targets of issue 5 (sinch-sms-proxy with every metric on)\n")
    print("\n".join(c.line() for c in checks))

    suspect = [r for r in runs if r.problems]
    miscounted = [r for r in runs if r.mismatch]
    errors = len(suspect) + len(miscounted) + bool(rss_problems) + bool(scraped and scraped.problems)
    if suspect:
        print(f"\n!! {len(suspect)} runs had errors or unexpected statuses (see above): their numbers are suspect")
    if miscounted or rss_problems:
        print("\n!! sinch-sms-proxy's counts differ from the answers hey received (see the count check)")
    if scraped and scraped.problems:
        print("\n!! the scrape phase did not make the full set of series it claims")
    status = results.exit_status(errors, checks, args.fail_on_targets)
    print(f"\nbench: {elapsed:.0f} s; python {sys.version.split()[0]}; exit {status}"
          f"{' (measurement errors)' if status == 1 else ' (a target missed)' if status == 2 else ''}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    shutil.rmtree(home, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
