"""The demo's traffic generator: its client-side aborts reach the proxy as client aborts, in the
share asked for, and only there (a forced answer, or a share of 0, abandons nothing)."""

from __future__ import annotations

import pytest

from sinch_sms_exporter.sim import traffic
from tests.helpers.client import scrape, total
from tests.helpers.processes import running, start_proxy, start_simulator, wait_until
from tools import demo


def test_the_abort_mix_is_small_and_waits_less_than_the_slow_answer() -> None:
    assert 0 < traffic.ABORT_SHARE <= 0.05
    head, _, seconds = traffic.SLOW_ANSWER.partition(":")
    assert head == "slow" and float(seconds) >= 2 * traffic.ABORT_TIMEOUT
    # Far below the proxy's upstream timeout in the demo: the proxy waits, the client does not.
    assert float(demo.PROXY_ARGS[demo.PROXY_ARGS.index("--upstream-timeout") + 1]) > float(seconds)


def test_a_forced_answer_or_a_bad_share_abandons_nothing() -> None:
    assert traffic.Generator("http://127.0.0.1:1", "P", 1, 1, "429", None).abort_share == 0
    assert traffic.Generator("http://127.0.0.1:1", "P", 1, 1, None, None, 0.0).abort_share == 0
    assert demo.generator("http://127.0.0.1:1").abort_share == traffic.ABORT_SHARE
    with pytest.raises(ValueError, match="abort-share"):
        traffic.Generator("http://127.0.0.1:1", "P", 1, 1, None, None, 1.5)
    with pytest.raises(SystemExit):
        traffic.main(["--abort-share", "-1"])


@pytest.mark.e2e
@pytest.mark.slow
def test_abandoned_requests_are_client_aborts_of_the_proxy(tmp_path) -> None:
    with running(start_simulator(tmp_path, *demo.SIMULATOR_ARGS)) as sim:
        upstream = f"http://127.0.0.1:{sim.ports['http']}"
        with running(start_proxy(tmp_path, upstream, *demo.PROXY_ARGS)) as proxy:
            url = f"http://127.0.0.1:{proxy.ports['listen']}"
            assert traffic.abandon_one(url, demo.PLAN) == traffic.ABANDONED
            everything = traffic.Generator(url, demo.PLAN, 10, 2, None, 7, abort_share=1.0)
            tally = everything.run(duration=1.5)
            assert set(tally) == {traffic.ABANDONED} and tally[traffic.ABANDONED] >= 3
            # The proxy counts each abort once it sees the client gone (a moment after).
            expected = 1 + tally[traffic.ABANDONED]
            wait_until(
                lambda: total(scrape(proxy.ports["metrics"]), "sinch_sms_client_aborts_total") >= expected,
                timeout=10,
                what="the proxy counted every abandoned request",
            )
            samples = scrape(proxy.ports["metrics"])
            assert total(samples, "sinch_sms_client_aborts_total") == expected
            assert total(samples, "sinch_sms_responses_total") == 0
            assert total(samples, "sinch_sms_upstream_errors_total") == 0
            # A share among the realistic calls: some abandoned, the others answered.
            mixed = traffic.Generator(url, demo.PLAN, 50, 4, None, 3, abort_share=0.2).run(duration=2)
            abandoned, sent = mixed.get(traffic.ABANDONED, 0), sum(mixed.values())
            assert 0 < abandoned < sent / 2, mixed
