"""`make bench`: throughput, latency, CPU and memory of sinch-sms-proxy against bare mitmdump.

One run on this machine, real processes only: Debian's `hey` load generator, Debian's
nginx-light as a fast upstream (bench/upstream.py), and three ways to reach it:

    direct           hey → nginx
    mitmdump         hey → mitmdump --mode reverse:http://127.0.0.1:NGINX@PORT -q → nginx
    sinch-sms-proxy  hey → sinch-sms-proxy --upstream http://127.0.0.1:NGINX@PORT → nginx

two mixes (all-success: 201 + JSON; all-error: 403 `{"code":"blocked_account",…}`, every
answer parsed), runs alternating between the three (A B C A B C…), medians over the pairs,
and the ratios sinch-sms-proxy / mitmdump from the same run. Then: the latency each proxy
adds over direct at concurrency 1, the cost of a /metrics scrape with a full set of series,
RSS of a fresh proxy after 10k and 200k requests, the addon's own µs per answer, and a
py-spy profile of sinch-sms-proxy under load (bench/hotspots.py; skipped without py-spy).

    .venv/bin/python bench/run.py [--pairs 5] [--duration 3] [--rss-requests 200000] …

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
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import hotspots
import loadgen
import microbench
import procs
import scrape
import upstream

MIXES: dict[str, tuple[str, int]] = {
    "success": (upstream.SUCCESS_PATH, 201),
    "error": (upstream.ERROR_PATH, 403),
}
DIRECT, MITMDUMP, SINCH = "direct (nginx)", "mitmdump", "sinch-sms-proxy"
SINCH_OPTIMIZED = f"{SINCH} -O"
RSS_CHECKPOINTS = (10_000, 50_000, 100_000, 150_000, 200_000)


@dataclass
class Run:
    """One hey run against one target: hey's numbers plus the target's CPU and RSS."""

    target: str
    mix: str
    concurrency: int
    rps: float
    p50: float
    p95: float
    p99: float
    requests: int
    cpu_seconds: float
    rss_bytes: int
    problems: str = ""

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_seconds / self.requests * 1000 if self.requests else float("nan")


def measure(target: procs.Target, mix: str, concurrency: int, duration: float, cpus: str | None) -> Run:
    path, status = MIXES[mix]
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
    return Run(
        target.name, mix, concurrency, result.rps, result.latency(50), result.latency(95), result.latency(99),
        result.requests, cpu, procs.rss_bytes(target.pid), "; ".join(problems),
    )  # fmt: skip


def median(runs: Sequence[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(r) for r in runs)


# --- output --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _targets(runs: list[Run]) -> list[str]:
    """Target names in the order they were run."""
    return list(dict.fromkeys(r.target for r in runs))


def load_table(runs: list[Run], concurrency: int) -> str:
    """Medians per mix and target, then each sinch-sms-proxy's ratios to bare mitmdump."""
    lines = [
        "| mix | target | req/s (min-max) | p50 ms | p95 ms | p99 ms | CPU s / 1k req | RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mix in MIXES:
        by_target = {t: [r for r in runs if r.mix == mix and r.target == t and r.concurrency == concurrency]
                     for t in _targets(runs)}  # fmt: skip
        for target, group in by_target.items():
            if not group:
                continue
            cpu_note = " (nginx)" if target == DIRECT else ""
            lines.append(
                f"| {mix} | {target} | {median(group, lambda r: r.rps):,.0f} "
                f"({min(r.rps for r in group):,.0f}-{max(r.rps for r in group):,.0f}) "
                f"| {_ms(median(group, lambda r: r.p50))} | {_ms(median(group, lambda r: r.p95))} "
                f"| {_ms(median(group, lambda r: r.p99))} | {median(group, lambda r: r.cpu_per_1k):.3f}{cpu_note} "
                f"| {max(r.rss_bytes for r in group) / 2**20:.0f} |"
            )
        mitm = by_target.get(MITMDUMP)
        for target, sinch in by_target.items():
            if not (mitm and sinch and target.startswith(SINCH)):
                continue
            ratio = {
                name: median(sinch, key) / median(mitm, key)
                for name, key in (
                    ("rps", lambda r: r.rps),
                    ("p50", lambda r: r.p50),
                    ("p95", lambda r: r.p95),
                    ("p99", lambda r: r.p99),
                    ("cpu", lambda r: r.cpu_per_1k),
                )
            }
            lines.append(
                f"| {mix} | **ratio {target} / mitmdump** | **{ratio['rps']:.2f}x** | {ratio['p50']:.2f}x "
                f"| {ratio['p95']:.2f}x | **{ratio['p99']:.2f}x** | {ratio['cpu']:.2f}x | |"
            )
    return "\n".join(lines)


def latency_table(runs: list[Run]) -> str:
    """Concurrency 1: p50 of each way, and what each proxy adds over direct."""
    lines = ["| mix | target | p50 ms | p99 ms | added p50 over direct, ms |", "| --- | --- | ---: | ---: | ---: |"]
    for mix in MIXES:
        group = {t: [r for r in runs if r.mix == mix and r.target == t and r.concurrency == 1]
                 for t in _targets(runs)}  # fmt: skip
        if not group.get(DIRECT):
            continue
        direct = median(group[DIRECT], lambda r: r.p50)
        for target, runs_ in group.items():
            p50 = median(runs_, lambda r: r.p50)
            added = "" if target == DIRECT else f"{(p50 - direct) * 1000:.2f}"
            lines.append(f"| {mix} | {target} | {_ms(p50)} | {_ms(median(runs_, lambda r: r.p99))} | {added} |")
    return "\n".join(lines)


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
                note = f"  !! {run.problems}" if run.problems else ""
                print(f"  {mix:<7} c={args.concurrency} #{pair + 1} {target.name:<19} {run.rps:>9,.0f} req/s "
                      f"p99 {_ms(run.p99):>6} ms  {run.cpu_per_1k:.3f} CPU s/1k{note}", flush=True)  # fmt: skip
    for mix in MIXES:
        for pair in range(args.pairs):
            for target in targets:
                run = measure(target, mix, 1, args.latency_duration, load_cpus)
                runs.append(run)
                print(f"  {mix:<7} c=1 #{pair + 1} {target.name:<19} p50 {_ms(run.p50):>5} ms", flush=True)
    return runs


def rss_phase(nginx_url: str, home: Path, args: argparse.Namespace, load_cpus, proxy_cpus) -> list[tuple[int, int]]:
    """A fresh sinch-sms-proxy; RSS after each checkpoint of requests (success and error alternating)."""
    proxy = procs.start_sinch_proxy(nginx_url, home, proxy_cpus, name="rss-proxy")
    points = [(0, procs.rss_bytes(proxy.pid))]
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
                turn += 1
            points.append((sent, procs.rss_bytes(proxy.pid)))
            print(f"  rss after {sent:>7,} requests: {points[-1][1] / 2**20:.1f} MiB", flush=True)
    finally:
        proxy.stop()
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="alternating rounds per mix (medians over them)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per hey run")
    parser.add_argument("--concurrency", type=int, default=32, help="hey workers (connections) under load")
    parser.add_argument("--latency-duration", type=float, default=1.5, help="seconds per concurrency-1 run")
    parser.add_argument("--rss-requests", type=int, default=200_000, help="requests through a fresh proxy (0: skip)")
    parser.add_argument("--no-scrape", action="store_true", help="skip the /metrics scrape measurement")
    parser.add_argument("--no-microbench", action="store_true", help="skip the in-process micro-benchmark")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the proxy under load")
    parser.add_argument("--no-pin", action="store_true", help="do not pin load and proxies to separate CPUs")
    parser.add_argument(
        "--python-optimize",
        action="store_true",
        help=f"also run '{SINCH_OPTIMIZED}': sinch-sms-proxy with PYTHONOPTIMIZE=1 (mitmproxy's debug checks off)",
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
        report["runs"] = [asdict(r) for r in runs]
        rss = rss_phase(nginx_url, home, args, load_cpus, proxy_cpus) if args.rss_requests else []
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
    print(load_table(runs, args.concurrency))
    print(f"\n## Concurrency 1 (hey -c 1, {args.pairs} rounds of {args.latency_duration:g} s; medians)\n")
    print(latency_table(runs))
    if rss:
        print("\n## sinch-sms-proxy RSS (fresh process, success and error alternating)\n")
        print(" | ".join(f"{n:,} req: {b / 2**20:.1f} MiB" for n, b in rss))
    if scraped:
        report["scrape"] = asdict(scraped)
        print(f"\n## /metrics with a full set of series ({scraped.requests:,} requests through the proxy)\n")
        print(f"{scraped.series:,} samples, {scraped.size_bytes / 1024:.0f} KiB, "
              f"scrape {scraped.median_ms:.1f} ms median of {len(scraped.times_ms)}")  # fmt: skip
    if micro:
        report["microbench"] = [asdict(m) for m in micro]
        print("\n## The addon in-process (µs per answer, median of 7 repeats)\n")
        for m in micro:
            print(f"{m.name:<58} {m.microseconds:6.2f}")
    for mix, prof in profiles.items():
        report.setdefault("profiles", {})[mix] = asdict(prof)
        print(f"\n## Profile of sinch-sms-proxy under load, {mix} mix\n")
        print(hotspots.report(prof, mix, 12))
    problems = [r for r in runs if r.problems]
    if problems:
        print(f"\n!! {len(problems)} runs had errors or unexpected statuses (see above): their numbers are suspect")
    print(f"\nbench: {elapsed:.0f} s; python {sys.version.split()[0]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    shutil.rmtree(home, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
