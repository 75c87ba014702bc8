"""The arithmetic of `make bench`'s report: medians, ratios, added latency, the count check,
the targets of issue 5 and the exit status. Pure functions of the measured numbers (no
processes, no clock), so tests/bench/test_bench.py checks them with concrete inputs.

Exit status of `make bench`: 1 when a measurement is wrong (hey reported errors or statuses
nginx never sends, or sinch-sms-proxy counted other answers than hey received), else 0. A
missed target is printed as FAIL but does not change the exit status: on a shared machine
it is a finding to read, not a broken run (--fail-on-targets makes it exit 2).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

DIRECT, MITMDUMP, SINCH = "direct (nginx)", "mitmdump", "sinch-sms-proxy"
MIXES = ("success", "error")
#: What nginx answers on each mix: the status, and the `code` the proxy must count it under.
MIX_ANSWERS: dict[str, tuple[int, str]] = {"success": (201, ""), "error": (403, "blocked_account")}

# The targets of issue 5, as checked by target_checks.
MIN_RPS_RATIO = 1.5  # sinch-sms-proxy req/s over bare mitmdump's, each mix
MAX_P99_RATIO = 1.0  # "p99 no worse" than bare mitmdump's, each mix
MAX_ADDED_P50 = 0.001  # seconds over direct, at concurrency 1
RSS_FROM = 10_000  # requests: RSS is compared between this reading and the last one (200k)
MAX_RSS_GROWTH = 0.10  # "flat": the last reading at most 10% above the one at RSS_FROM
MAX_MICROSECONDS = 10.0  # "low microseconds": the addon's hooks per answer, in-process

EXIT_OK, EXIT_MEASUREMENT_ERROR, EXIT_TARGET_MISSED = 0, 1, 2

K = TypeVar("K", bound=Hashable)


@dataclass
class Run:
    """One hey run against one target: hey's numbers plus the target's CPU and RSS.

    `problems`: hey's errors or unexpected statuses; `mismatch`: what sinch-sms-proxy counted
    differs from what hey received. Either makes the run's numbers suspect."""

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
    mismatch: str = ""

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_seconds / self.requests * 1000 if self.requests else float("nan")


def median(runs: Sequence[Run], key: Callable[[Run], float]) -> float:
    return statistics.median(key(r) for r in runs)


def targets_in_order(runs: Sequence[Run]) -> list[str]:
    """Target names in the order they were run."""
    return list(dict.fromkeys(r.target for r in runs))


def group(runs: Sequence[Run], mix: str, concurrency: int) -> dict[str, list[Run]]:
    """The runs of one mix at one concurrency, by target (in run order; targets without runs left out)."""
    groups = {t: [r for r in runs if r.mix == mix and r.target == t and r.concurrency == concurrency]
              for t in targets_in_order(runs)}  # fmt: skip
    return {t: g for t, g in groups.items() if g}


RATIO_KEYS: dict[str, Callable[[Run], float]] = {
    "rps": lambda r: r.rps,
    "p50": lambda r: r.p50,
    "p95": lambda r: r.p95,
    "p99": lambda r: r.p99,
    "cpu": lambda r: r.cpu_per_1k,
}


def ratios(proxy: Sequence[Run], base: Sequence[Run]) -> dict[str, float]:
    """Median of `proxy` over median of `base`, for req/s, p50, p95, p99 and CPU per 1k requests."""
    return {name: median(proxy, key) / median(base, key) for name, key in RATIO_KEYS.items()}


def added_p50(runs: Sequence[Run], mix: str) -> dict[str, float]:
    """Concurrency 1: seconds each proxy adds to direct's median p50 (its median p50 minus direct's)."""
    groups = group(runs, mix, 1)
    if DIRECT not in groups:
        return {}
    direct = median(groups[DIRECT], lambda r: r.p50)
    return {t: median(g, lambda r: r.p50) - direct for t, g in groups.items() if t != DIRECT}


# --- the count check ------------------------------------------------------------------------


def increase(before: Mapping[K, float], after: Mapping[K, float]) -> dict[K, float]:
    """Per key, how much a counter grew between two scrapes (keys new in `after` grew from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def count_problems(
    hey_statuses: Mapping[int, int],
    counted: Mapping[tuple[str, str], float],
    codes: Mapping[int, str],
    failures: float = 0.0,
) -> list[str]:
    """Compare what sinch-sms-proxy counted during a run with what hey received.

    `counted`: the increase of sinch_sms_responses_total by (status, code); `codes`: the code
    each status must carry (nginx's fixed answers); `failures`: the increase of upstream errors
    and client aborts, which must be 0 when hey got every answer. [] when everything matches."""
    problems = []
    by_status: dict[str, float] = {}
    for (status, _), n in counted.items():
        by_status[status] = by_status.get(status, 0.0) + n
    received = {str(s): n for s, n in hey_statuses.items()}
    for status in sorted(set(by_status) | set(received)):
        if by_status.get(status, 0.0) != received.get(status, 0):
            problems.append(
                f"status {status}: counted {by_status.get(status, 0.0):,.0f}, hey {received.get(status, 0):,}"
            )
    for (status, code), n in sorted(counted.items()):
        want = codes.get(int(status))
        if want is not None and code != want:
            problems.append(f"{n:,.0f} answers {status} counted as code={code!r}, not {want!r}")
    if failures:
        problems.append(f"{failures:,.0f} upstream errors or client aborts counted")
    return problems


# --- targets --------------------------------------------------------------------------------


@dataclass
class Check:
    """One target on one scope: PASS, FAIL, or SKIP (passed None: not measured)."""

    target: str
    scope: str
    value: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]

    def line(self) -> str:
        return f"{self.verdict}  {self.target:<48} {self.scope:<20} {self.value}"


def rss_span(points: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(requests, RSS) at the first reading at or after RSS_FROM requests and at the last one;
    None when there are not two such readings."""
    after = [p for p in points if p[0] >= RSS_FROM]
    if len(after) < 2:
        return None
    return after[0], after[-1]


def target_checks(
    runs: Sequence[Run],
    concurrency: int,
    rss: Sequence[tuple[int, int]] = (),
    micro_us: Mapping[str, float] | None = None,
) -> list[Check]:
    """The targets of issue 5 against one run's numbers (sinch-sms-proxy with its defaults)."""
    checks = []
    for mix in MIXES:
        groups = group(runs, mix, concurrency)
        if SINCH in groups and MITMDUMP in groups:
            ratio = ratios(groups[SINCH], groups[MITMDUMP])
            checks.append(Check(f"req/s >= {MIN_RPS_RATIO:g}x bare mitmdump", f"{mix} mix",
                                f"{ratio['rps']:.2f}x", ratio["rps"] >= MIN_RPS_RATIO))  # fmt: skip
            checks.append(Check("p99 no worse than bare mitmdump", f"{mix} mix",
                                f"{ratio['p99']:.2f}x", ratio["p99"] <= MAX_P99_RATIO))  # fmt: skip
        else:
            checks.append(Check(f"req/s >= {MIN_RPS_RATIO:g}x bare mitmdump", f"{mix} mix", "not measured", None))
    for mix in MIXES:
        added = added_p50(runs, mix).get(SINCH)
        name = f"added p50 over direct at c=1 < {MAX_ADDED_P50 * 1000:g} ms"
        if added is None:
            checks.append(Check(name, f"{mix} mix", "not measured", None))
        else:
            checks.append(Check(name, f"{mix} mix", f"{added * 1000:.2f} ms", added < MAX_ADDED_P50))
    span = rss_span(rss)
    name = f"RSS flat (< {MAX_RSS_GROWTH:.0%} growth)"
    if span is None:
        checks.append(Check(name, "fresh proxy", "not measured", None))
    else:
        (n0, b0), (n1, b1) = span
        growth = (b1 - b0) / b0
        checks.append(Check(name, f"{n0 // 1000:,}k -> {n1 // 1000:,}k req",
                            f"{b0 / 2**20:.1f} -> {b1 / 2**20:.1f} MiB ({(b1 - b0) / 2**20:+.1f} MiB, {growth:+.1%})",
                            growth < MAX_RSS_GROWTH))  # fmt: skip
    for answer, us in (micro_us or {}).items():
        checks.append(Check(f"addon < {MAX_MICROSECONDS:g} µs per answer (in-process)", answer, f"{us:.2f} µs",
                            us < MAX_MICROSECONDS))  # fmt: skip
    return checks


def exit_status(measurement_errors: int, checks: Sequence[Check], fail_on_targets: bool = False) -> int:
    """1 for any measurement error; 2 for a missed target only with --fail-on-targets; else 0."""
    if measurement_errors:
        return EXIT_MEASUREMENT_ERROR
    if fail_on_targets and any(c.passed is False for c in checks):
        return EXIT_TARGET_MISSED
    return EXIT_OK


# --- tables ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def load_table(runs: Sequence[Run], concurrency: int) -> str:
    """Medians per mix and target, then each sinch-sms-proxy's ratios to bare mitmdump."""
    lines = [
        "| mix | target | req/s (min-max) | p50 ms | p95 ms | p99 ms | CPU s / 1k req | RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mix in MIXES:
        by_target = group(runs, mix, concurrency)
        for target, runs_ in by_target.items():
            cpu_note = " (nginx)" if target == DIRECT else ""
            lines.append(
                f"| {mix} | {target} | {median(runs_, lambda r: r.rps):,.0f} "
                f"({min(r.rps for r in runs_):,.0f}-{max(r.rps for r in runs_):,.0f}) "
                f"| {_ms(median(runs_, lambda r: r.p50))} | {_ms(median(runs_, lambda r: r.p95))} "
                f"| {_ms(median(runs_, lambda r: r.p99))} | {median(runs_, lambda r: r.cpu_per_1k):.3f}{cpu_note} "
                f"| {max(r.rss_bytes for r in runs_) / 2**20:.0f} |"
            )
        mitm = by_target.get(MITMDUMP)
        for target, sinch in by_target.items():
            if not (mitm and target.startswith(SINCH)):
                continue
            ratio = ratios(sinch, mitm)
            lines.append(
                f"| {mix} | **ratio {target} / mitmdump** | **{ratio['rps']:.2f}x** | {ratio['p50']:.2f}x "
                f"| {ratio['p95']:.2f}x | **{ratio['p99']:.2f}x** | {ratio['cpu']:.2f}x | |"
            )
    return "\n".join(lines)


def latency_table(runs: Sequence[Run]) -> str:
    """Concurrency 1: p50 of each way, and what each proxy adds over direct."""
    lines = ["| mix | target | p50 ms | p99 ms | added p50 over direct, ms |", "| --- | --- | ---: | ---: | ---: |"]
    for mix in MIXES:
        groups = group(runs, mix, 1)
        added = added_p50(runs, mix)
        if DIRECT not in groups:
            continue
        for target, runs_ in groups.items():
            more = f"{added[target] * 1000:.2f}" if target in added else ""
            p50, p99 = median(runs_, lambda r: r.p50), median(runs_, lambda r: r.p99)
            lines.append(f"| {mix} | {target} | {_ms(p50)} | {_ms(p99)} | {more} |")
    return "\n".join(lines)
