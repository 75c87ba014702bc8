"""Restart, end to end: a real Prometheus scrapes the proxy every second while the proxy is
restarted in place (same ports). Counters start again from zero (nothing is persisted) and
Prometheus's counter-reset handling in increase()/rate() counts every answer of both
lifetimes, no more, no fewer."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from tests.helpers.client import http, scrape, total
from tests.helpers.paths import PLAN
from tests.helpers.processes import running, start_proxy, start_simulator, wait_until
from tests.helpers.prometheus import prom_query, start_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Answers per lifetime, by simulator answer. Every series exists before the first lifetime's
# traffic (one warm-up answer each), and the second lifetime sends fewer than the first, so
# the first scrape after the restart shows each counter lower than before: a reset Prometheus
# sees. (A series that first appears, or a counter that climbs past its old value before the
# first scrape after a restart, hides its first increments from increase(): see
# docs/operations.md.)
KINDS = {"ok": ("201", ""), "403:blocked_account": ("403", "blocked_account"), "429": ("429", ""), "500": ("500", "")}
FIRST = {"ok": 30, "403:blocked_account": 12, "429": 9, "500": 6}
SECOND = {"ok": 20, "403:blocked_account": 5, "429": 4, "500": 3}
METRIC = "sinch_sms_responses_total"


def send(port: int, counts: dict[str, int]) -> Counter[tuple[str, str]]:
    received: Counter[tuple[str, str]] = Counter()
    for answer, count in counts.items():
        for _ in range(count):
            status, _, _ = http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": answer})
            assert str(status) == KINDS[answer][0]
            received[KINDS[answer]] += 1
    return received


def prom_value(port: int, expr: str, at: float | None = None) -> float | None:
    result = prom_query(port, expr, at)["result"]
    return float(result[0]["value"][1]) if result else None


def test_counters_restart_from_zero_and_increase_counts_both_lifetimes(tmp_path) -> None:
    with running(start_simulator(tmp_path)) as sim:
        upstream = f"http://127.0.0.1:{sim.ports['http']}"
        first = start_proxy(tmp_path, upstream)
        ports = (first.ports["listen"], first.ports["metrics"])
        config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: sinch-sms-proxy
    static_configs: [{{targets: ["127.0.0.1:{ports[1]}"]}}]
"""
        with running(first), running(start_prometheus(tmp_path, config)) as prometheus:
            prom = prometheus.ports["http"]
            send(ports[0], dict.fromkeys(KINDS, 1))  # warm-up: every series exists
            wait_until(lambda: prom_value(prom, f"sum({METRIC})") == len(KINDS), what="the warm-up scraped")
            sent = send(ports[0], FIRST)
            before = len(KINDS) + sum(FIRST.values())
            wait_until(lambda: prom_value(prom, f"sum({METRIC})") == before, what="the first lifetime scraped")
            start_time = prom_value(prom, "process_start_time_seconds")

            assert first.stop(signal.SIGTERM) == 0
            with running(start_proxy(tmp_path, upstream, ports=ports)) as second:
                # Nothing persisted: the new process starts from zero.
                assert total(scrape(ports[1]), METRIC) == 0
                sent += send(ports[0], SECOND)
                assert total(scrape(second.ports["metrics"]), METRIC) == sum(SECOND.values())
                wait_until(
                    lambda: (
                        prom_value(prom, f"sum({METRIC})") == sum(SECOND.values())
                        and prom_value(prom, "process_start_time_seconds") != start_time
                    ),
                    what="the second lifetime scraped",
                )
                # One more scrape, so that the last sample of every series is final.
                last_scrape = prom_value(prom, "timestamp(up)")
                wait_until(lambda: prom_value(prom, "timestamp(up)") > last_scrape, what="one more scrape")

            # Raw samples of every series: the window below starts exactly at the first scrape
            # where every series existed (the warm-up values) and ends at the last scrape.
            raw = prom_query(prom, f"{METRIC}[10m]")["result"]
            assert len(raw) == len(KINDS)
            t_base = max(float(series["values"][0][0]) for series in raw)
            t_end = min(float(series["values"][-1][0]) for series in raw)
            for series in raw:
                assert dict(series["values"])[series["values"][0][0]] == "1"  # warm-up value

            # Prometheus saw each counter drop once: a reset.
            resets = prom_query(prom, f"resets({METRIC}[10m])")["result"]
            assert {r["metric"]["status"]: float(r["value"][1]) for r in resets} == dict.fromkeys(
                [s for s, _ in KINDS.values()], 1.0
            )

            # A window from just before the warm-up scrape to the last scrape: Prometheus
            # extrapolates only that 1 ms (a factor of ~1.0001), so increase() is all but exact:
            # every answer of both lifetimes after the warm-up, per status and code, no more, no
            # fewer; rate() agrees. (1 ms early: Prometheus 3 no longer includes a sample at the
            # window's very start.)
            span = t_end - t_base + 0.001
            window = f"{round(span * 1000)}ms"
            increase = prom_query(prom, f"sum by (status, code) (increase({METRIC}[{window}]))", at=t_end)["result"]
            # (Prometheus drops empty labels: code="" comes back without a code label.)
            counted = {(r["metric"]["status"], r["metric"].get("code", "")): float(r["value"][1]) for r in increase}
            print(f"increase over {window}: {counted}; sent: {dict(sent)}")
            assert counted == pytest.approx({kind: float(n) for kind, n in sent.items()}, abs=0.05)
            rate = prom_value(prom, f"sum(rate({METRIC}[{window}]))", at=t_end)
            assert rate * span == pytest.approx(sum(sent.values()), abs=0.05)

            # The usual dashboard query, a window wider than the data: Prometheus extrapolates
            # each series back towards its start, but never past where the counter would have
            # been zero. So it never reports fewer answers than it saw, nor more than were
            # really sent in the window (the warm-ups included), restart or not.
            seen = sum(sent.values())
            really_sent = seen + len(KINDS)
            wide = prom_value(prom, f"sum(increase({METRIC}[5m]))", at=t_end)
            print(f"increase over 5m: {wide} (seen {seen}, sent {really_sent})")
            assert seen <= wide <= really_sent + 1e-9
