"""Alert and recording rules, judged by promtool itself: syntax and lint, every unit test file,
a firing and a quiet case for every alert, and mutations that prove those tests would catch
a broken rule (a dropped traffic floor, a `for:` of zero, a lost term of the blocked_account sum)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sinch_sms_exporter.contract import alerts
from tests.helpers.paths import REPO
from tests.helpers.prometheus import system_tool

RULES = REPO / "prometheus"
ALERTS = RULES / "alerts.yml"
RECORDING = RULES / "recording.yml"
TEST_FILES = sorted((RULES / "tests").glob("*_test.yml"))
#: The alert that watches the exporter itself: the only one that names a job and has no region.
EXPORTER_DOWN = alerts.ALERT_EXPORTER_DOWN


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def rules(path: Path) -> list[dict]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict]:
    return [r for r in rules(ALERTS) if "alert" in r]


def promtool_run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([system_tool("promtool"), *map(str, args)], capture_output=True, text=True, cwd=cwd)


# --- promtool -------------------------------------------------------------------------------


def test_promtool_check_rules_finds_no_problem() -> None:
    result = promtool_run("check", "rules", ALERTS, RECORDING)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every rule was read (a rule lost to bad indentation would silently vanish).
    assert f"SUCCESS: {len(rules(ALERTS))} rules found" in result.stdout
    assert f"SUCCESS: {len(rules(RECORDING))} rules found" in result.stdout


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool_run("test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_exist() -> None:
    # The parametrized test above would pass vacuously on an empty directory.
    assert {p.name for p in TEST_FILES} >= {"account_blocked_test.yml", "recording_test.yml"}
    assert len(TEST_FILES) >= 9


# --- coverage of the unit tests ---------------------------------------------------------------


def _alert_cases() -> dict[str, list[list[dict]]]:
    """alertname → the exp_alerts list of every alert_rule_test case naming it."""
    cases: dict[str, list[list[dict]]] = {}
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case.get("exp_alerts") or [])
    return cases


def test_every_alert_has_a_firing_case_with_labels_and_annotations_and_a_quiet_case() -> None:
    cases = _alert_cases()
    names = {r["alert"] for r in alert_rules()}
    for name in names:
        firing = [expected for expected in cases.get(name, []) if expected]
        quiet = [expected for expected in cases.get(name, []) if not expected]
        assert firing, f"{name}: no promtool case where it fires"
        assert quiet, f"{name}: no promtool case where it stays quiet"
        for expected in firing:
            for alert in expected:
                assert alert["exp_labels"]["severity"] in ("critical", "warning"), name
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, name


def test_alerts_are_the_contract() -> None:
    contract = {v for k, v in vars(alerts).items() if k.startswith("ALERT_")}
    assert {r["alert"] for r in alert_rules()} == contract
    assert set(alerts.ALERTS_BY_NAME) == contract


CALLBACK_ALERTS = {
    alerts.ALERT_DELIVERY_FAILURE_RATE,
    alerts.ALERT_CALLBACK_RECEIVER_FAILING,
    alerts.ALERT_CALLBACKS_REJECTED,
}


def test_firing_alerts_keep_region_and_never_instance() -> None:
    """The labels promtool saw on firing alerts: one alert per region, whatever the number of
    sidecars (instances) behind it; only SinchSmsExporterDown is per target."""
    for name, case_list in _alert_cases().items():
        for expected in case_list:
            for alert in expected:
                labels = alert["exp_labels"]
                if name == EXPORTER_DOWN:
                    assert "job" in labels
                    continue
                if name in CALLBACK_ALERTS:  # the callback metrics carry no region: one listener serves all
                    assert set(labels) == {"severity"}, name
                    continue
                assert "region" in labels, name
                assert not {"instance", "pod", "job"} & set(labels), name


def test_only_exporter_down_names_a_job_and_no_rule_groups_by_instance() -> None:
    for rule in rules(ALERTS) + rules(RECORDING):
        name = rule.get("alert") or rule["record"]
        expr = rule["expr"]
        if name != EXPORTER_DOWN:
            assert not re.search(r"\bjob\s*(=|!=|=~|!~)", expr), f"{name} depends on the scrape job's name"
        # instance may only be a join key (restart detection), never kept in the output.
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            assert not {"instance", "pod"} & {label.strip() for label in clause.split(",")}, name


def test_severities_agree_with_the_runbook() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] == alerts.ALERTS_BY_NAME[rule["alert"]].severity, rule["alert"]


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in rules(RECORDING):
        level, metric, operations = rule["record"].split(":")
        assert re.fullmatch(r"[a-z_]+", level) and re.fullmatch(r"[a-z0-9_]+", operations), rule["record"]
        assert metric.startswith("sinch_sms_") and not metric.endswith("_total"), rule["record"]


def test_docs_explain_every_alert_with_its_for_duration() -> None:
    doc = (REPO / "docs" / "alerts.md").read_text()
    sections = re.split(r"\n## ", doc)
    for rule in alert_rules():
        anchor = alerts.ALERTS_BY_NAME[rule["alert"]].anchor
        section = next((s for s in sections if f'id="{anchor}"' in s), None)
        assert section is not None, f"docs/alerts.md has no section for {rule['alert']}"
        assert f"`for: {rule['for']}`" in section, f"docs/alerts.md: {rule['alert']} does not state for: {rule['for']}"


# --- mutations: the unit tests catch a broken rule ------------------------------------------------


def _alert_block(text: str, name: str) -> tuple[int, int]:
    start = text.index(f"- alert: {name}\n")
    end = text.find("- alert:", start + 1)
    return start, len(text) if end < 0 else end


def _mutate(name: str, change: Callable[[str], str]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        start, end = _alert_block(text, name)
        block = text[start:end]
        mutated = change(block)
        assert mutated != block, f"mutation of {name} changed nothing"
        return text[:start] + mutated + text[end:]

    return apply


def _drop_floor(block: str) -> str:
    """Remove the `and <traffic floor>` clause."""
    return re.sub(r"\n {10}and\n.*?(?=\n {8}for:)", "", block, flags=re.S)


def _drop_or_term(index: int) -> Callable[[str], str]:
    """Remove one of the three `or` terms of the blocked_account sum."""

    def change(block: str) -> str:
        head, body = block.split("sum by (region) (\n", 1)
        body, tail = body.split("\n          ) > 0", 1)
        terms = body.split("\n            or\n")
        assert len(terms) == 3
        del terms[index]
        return head + "sum by (region) (\n" + "\n            or\n".join(terms) + "\n          ) > 0" + tail

    return change


def _no_wait(block: str) -> str:
    return re.sub(r"for: \d+m", "for: 0m", block)


#: The scrape-gap guard of the new-series term (alerts.yml, SinchSmsAccountBlocked).
_GAP_GUARD = re.compile(r"\n {16}unless\n {18}\(\n {22}max_over_time\(.*?\(up offset 15m == 1\)\n {18}\)", re.S)


def _no_gap_guard(block: str) -> str:
    """Back to `x unless x offset 15m`: a scrape gap makes an old series look new."""
    return _GAP_GUARD.sub("", block)


def _guard_by_lookback_only(block: str) -> str:
    """`x unless max_over_time(x[1d] offset 15m)` alone: a series reborn after a restart is missed."""
    return re.sub(r"\n +unless on \(instance, job\)\n +\(up offset 15m == 1\)", "", block)


def _guard_by_up_only(block: str) -> str:
    """Only `up offset 15m`: the first answer soon after a scrape outage flaps."""
    return re.sub(r"max_over_time\((sinch_sms_responses_total\{[^}]*\})\[1d\] offset 15m\)", r"\1", block)


MUTATIONS = {
    "blocked: no new-series term": ("account_blocked", alerts.ALERT_ACCOUNT_BLOCKED, _drop_or_term(0)),
    "blocked: no restart term": ("account_blocked", alerts.ALERT_ACCOUNT_BLOCKED, _drop_or_term(1)),
    "blocked: no increase term": ("account_blocked", alerts.ALERT_ACCOUNT_BLOCKED, _drop_or_term(2)),
    "blocked: gaps make series new": ("account_blocked", alerts.ALERT_ACCOUNT_BLOCKED, _no_gap_guard),
    "blocked: gap guard by lookback only": (
        "account_blocked",
        alerts.ALERT_ACCOUNT_BLOCKED,
        _guard_by_lookback_only,
    ),
    "blocked: gap guard by up only": ("account_blocked", alerts.ALERT_ACCOUNT_BLOCKED, _guard_by_up_only),
    "blocked: any other code": (
        "account_blocked",
        alerts.ALERT_ACCOUNT_BLOCKED,
        lambda b: b.replace('code="blocked_account"', 'code=~".+"'),
    ),
    "5xx: no floor": ("server_errors", alerts.ALERT_SERVER_ERROR_SPIKE, _drop_floor),
    "5xx: no for": ("server_errors", alerts.ALERT_SERVER_ERROR_SPIKE, _no_wait),
    "5xx: threshold 50%": ("server_errors", alerts.ALERT_SERVER_ERROR_SPIKE, lambda b: b.replace("> 0.05", "> 0.5")),
    "5xx: no traffic floor": (
        "server_errors",
        alerts.ALERT_SERVER_ERROR_SPIKE,
        lambda b: re.sub(r"\n +and\n +sum by \(region\) \(increase\(sinch_sms_responses_total\[5m\]\)\) >= 10", "", b),
    ),
    "5xx: traffic floor 100": (
        "server_errors",
        alerts.ALERT_SERVER_ERROR_SPIKE,
        lambda b: b.replace("[5m])) >= 10\n", "[5m])) >= 100\n"),
    ),
    "5xx: no quiet-region rule": (
        "server_errors",
        alerts.ALERT_SERVER_ERROR_SPIKE,
        lambda b: b.replace(") > 0.5\n", ") > 1\n"),
    ),
    "401: no for": ("unauthorized", alerts.ALERT_UNAUTHORIZED, _no_wait),
    "401: threshold 10": ("unauthorized", alerts.ALERT_UNAUTHORIZED, lambda b: b.replace("> 0\n", "> 10\n")),
    "401: no quiet rule": ("unauthorized", alerts.ALERT_UNAUTHORIZED, lambda b: b.replace(") > 0.5\n", ") > 1\n")),
    "401: quiet rule at 10%": ("unauthorized", alerts.ALERT_UNAUTHORIZED, lambda b: b.replace("> 0.5\n", "> 0.1\n")),
    "401: quiet rule without floor": (
        "unauthorized",
        alerts.ALERT_UNAUTHORIZED,
        lambda b: re.sub(r"\n +and\n +sum by \(region\) \(increase\([^\n]*\[1h\]\)\) >= 3", "", b),
    ),
    "429: no floor": ("rate_limited", alerts.ALERT_RATE_LIMITED, _drop_floor),
    "429: no for": ("rate_limited", alerts.ALERT_RATE_LIMITED, _no_wait),
    "429: threshold 3%": ("rate_limited", alerts.ALERT_RATE_LIMITED, lambda b: b.replace("> 0.10", "> 0.03")),
    "callback: increase only": (
        "missing_callback_url",
        alerts.ALERT_MISSING_CALLBACK_URL,
        lambda b: re.sub(r"sum by \(region\) \(\n.*?\n {10}\) > 0", _increase_only, b, flags=re.S),
    ),
    "callback: gaps make series new": ("missing_callback_url", alerts.ALERT_MISSING_CALLBACK_URL, _no_gap_guard),
    "upstream: no floor": ("upstream_unreachable", alerts.ALERT_UPSTREAM_UNREACHABLE, _drop_floor),
    "upstream: no for": ("upstream_unreachable", alerts.ALERT_UPSTREAM_UNREACHABLE, _no_wait),
    "upstream: needs answers": (
        "upstream_unreachable",
        alerts.ALERT_UPSTREAM_UNREACHABLE,
        lambda b: re.sub(r"\n +or\n +0 \* sum by \(region\) \(rate\(sinch_sms_upstream_errors_total\[5m\]\)\)", "", b),
    ),
    "4xx: no floor": ("client_error_burst", alerts.ALERT_CLIENT_ERROR_BURST, _drop_floor),
    "4xx: no for": ("client_error_burst", alerts.ALERT_CLIENT_ERROR_BURST, _no_wait),
    "4xx: own-alert codes too": (
        "client_error_burst",
        alerts.ALERT_CLIENT_ERROR_BURST,
        lambda b: b.replace(', status!~"401|429", code!~"blocked_account|missing_callback_url"', ""),
    ),
    "delivery: no floor": ("delivery_failure_rate", alerts.ALERT_DELIVERY_FAILURE_RATE, _drop_floor),
    "delivery: no for": ("delivery_failure_rate", alerts.ALERT_DELIVERY_FAILURE_RATE, _no_wait),
    "delivery: intermediate statuses count": (
        "delivery_failure_rate",
        alerts.ALERT_DELIVERY_FAILURE_RATE,
        lambda b: b.replace('{status=~"aborted|cancelled|rejected|deleted|delivered|failed|expired|unknown"}', ""),
    ),
    "delivery: unknown is a failure": (
        "delivery_failure_rate",
        alerts.ALERT_DELIVERY_FAILURE_RATE,
        lambda b: b.replace(
            'status=~"aborted|rejected|deleted|failed|expired"',
            'status=~"aborted|rejected|deleted|failed|expired|unknown|cancelled"',
        ),
    ),
    "receiver: no floor": ("callback_receiver_failing", alerts.ALERT_CALLBACK_RECEIVER_FAILING, _drop_floor),
    "receiver: no for": ("callback_receiver_failing", alerts.ALERT_CALLBACK_RECEIVER_FAILING, _no_wait),
    "receiver: errors ignored": (
        "callback_receiver_failing",
        alerts.ALERT_CALLBACK_RECEIVER_FAILING,
        lambda b: b.replace(
            "sum(rate(sinch_sms_callback_errors_total[10m]))", "0 * sum(rate(sinch_sms_callback_errors_total[10m]))"
        ),
    ),
    "receiver: 429 not a failure": (
        "callback_receiver_failing",
        alerts.ALERT_CALLBACK_RECEIVER_FAILING,
        lambda b: b.replace('status=~"5..|429"', 'status=~"5.."'),
    ),
    "receiver: any 4xx a failure": (
        "callback_receiver_failing",
        alerts.ALERT_CALLBACK_RECEIVER_FAILING,
        lambda b: b.replace('status=~"5..|429"', 'status=~"[45].."'),
    ),
    "rejected: one is enough": (
        "callbacks_rejected",
        alerts.ALERT_CALLBACKS_REJECTED,
        lambda b: b.replace(">= 3", ">= 1"),
    ),
    "rejected: 429 too": (
        "callbacks_rejected",
        alerts.ALERT_CALLBACKS_REJECTED,
        lambda b: b.replace(', status!="429"', ""),
    ),
    "rejected: no for": ("callbacks_rejected", alerts.ALERT_CALLBACKS_REJECTED, _no_wait),
    "down: no for": ("exporter_down", EXPORTER_DOWN, _no_wait),
    "down: no absent()": ("exporter_down", EXPORTER_DOWN, lambda b: b.replace("or\n  ", "and\n  ", 1)),
}


def _increase_only(match: re.Match) -> str:
    metric = 'sinch_sms_responses_total{code="missing_callback_url"}'
    return f"sum by (region) (increase({metric}[15m])) > 0"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_unit_tests_catch_a_broken_rule(mutation: str, tmp_path: Path) -> None:
    test_name, alert, change = MUTATIONS[mutation]
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES / "tests" / f"{test_name}_test.yml", tmp_path / "tests")
    (tmp_path / "alerts.yml").write_text(_mutate(alert, change)(ALERTS.read_text()))
    assert promtool_run("check", "rules", tmp_path / "alerts.yml").returncode == 0, "the mutant must stay valid"
    result = promtool_run("test", "rules", f"{test_name}_test.yml", cwd=tmp_path / "tests")
    assert result.returncode != 0, f"{test_name}_test.yml still passes with the rule broken ({mutation})"
