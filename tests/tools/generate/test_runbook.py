"""The runbook and the alerts' annotations agree with the catalog and contract.alerts, and every link lands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sinch_sms_exporter.contract import alerts, catalog, labels
from tests.helpers.paths import REPO
from tools import generate
from tools.generate import alert_rules as rules_generator
from tools.generate import runbook

RUNBOOK = REPO / "docs" / "runbook.md"
ALERTS = REPO / "prometheus" / "alerts.yml"


def alert_rules() -> list[dict]:
    doc = YAML(typ="safe").load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def anchors(markdown: str) -> set[str]:
    return set(re.findall(r'<a id="([^"]+)"></a>', markdown))


def section(markdown: str, anchor: str) -> str:
    """The text from an anchor's heading to the next heading of the same or a higher level."""
    match = re.search(rf'^(#+) <a id="{re.escape(anchor)}"></a>.*$', markdown, re.M)
    assert match, f"no section {anchor}"
    level = len(match.group(1))
    rest = markdown[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def test_committed_runbook_is_the_generated_one() -> None:
    assert RUNBOOK.read_text() == runbook.render(), "run `make generate`"


def test_committed_alert_annotations_are_the_generated_ones() -> None:
    assert rules_generator.sync_alerts(ALERTS.read_text()) == ALERTS.read_text(), "run `make generate`"
    for rule in alert_rules():
        assert rule["annotations"] == rules_generator.annotations_of(alerts.ALERTS_BY_NAME[rule["alert"]]), rule[
            "alert"
        ]


def test_every_status_and_code_has_a_section_with_meaning_tip_and_alert() -> None:
    text = RUNBOOK.read_text()
    for info in (*catalog.STATUSES.values(), *catalog.CODES.values()):
        body = section(text, info.anchor)
        assert info.meaning in body and info.tip in body, info.anchor
        assert (f"`{info.alert}`" if info.alert else "**Alert:** none") in body, info.anchor


def test_every_code_section_shows_the_answer_sinch_sends() -> None:
    text = RUNBOOK.read_text()
    for info in catalog.CODES.values():
        assert f'{{"code": "{info.code}", "text": "{info.text}"}}' in section(text, info.anchor)


def test_every_alert_has_a_section_listing_what_makes_it_fire() -> None:
    text = RUNBOOK.read_text()
    for alert in alerts.ALERTS:
        body = section(text, alert.anchor)
        assert f"**Severity:** {alert.severity}" in body
        for cause in generate.causes(alert):
            assert f"(#{cause.anchor})" in body and cause.tip in body, (alert.name, cause.anchor)
        if not generate.causes(alert):
            assert alert.meaning in body and alert.todo in body


def test_every_runbook_url_opens_an_existing_section() -> None:
    existing = anchors(RUNBOOK.read_text())
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == generate.RUNBOOK_URL and base.endswith("/docs/runbook.md"), url
        assert anchor in existing, f"{rule['alert']}: {url} points at no section"


def test_runbook_links_land() -> None:
    text = RUNBOOK.read_text()
    existing = anchors(text) | {"alerts", "http-statuses", "error-codes", "upstream-errors"}
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in existing, f"dangling link #{target}"
    alerts_doc = (REPO / "docs" / "alerts.md").read_text()
    for target in re.findall(r"\]\(alerts\.md#([^)]+)\)", text):
        assert f'<a id="{target}"></a>' in alerts_doc, f"alerts.md has no #{target}"


def test_descriptions_carry_the_catalog_tips() -> None:
    """What the on-call engineer reads in the page is the catalog's advice, verbatim."""
    for rule in alert_rules():
        alert = alerts.ALERTS_BY_NAME[rule["alert"]]
        description = " ".join(rule["annotations"]["description"].split())
        for cause in generate.causes(alert):
            if isinstance(cause, catalog.StatusInfo) and catalog.codes_for_status(cause.status):
                continue  # 400/403 themselves: their codes carry the advice
            assert " ".join(cause.tip.split()) in description, (rule["alert"], cause.anchor)


def test_client_error_burst_advice_has_a_branch_per_code() -> None:
    alert = alerts.ALERTS_BY_NAME[alerts.ALERT_CLIENT_ERROR_BURST]
    description = rules_generator.description(alert)
    for code in catalog.CODES.values():
        if code.alert == alert.name:
            assert f'eq $labels.code "{code.code}"' in description
    # Balanced template actions: one {{ end }} per if/else-if chain and per with.
    assert description.count("{{ if ") + description.count("{{ with ") == description.count("{{ end }}")


def test_upstream_reasons_are_the_metric_reasons() -> None:
    assert tuple(alerts.UPSTREAM_REASONS) == labels.UPSTREAM_ERROR_REASONS
    text = RUNBOOK.read_text()
    for reason in labels.UPSTREAM_ERROR_REASONS:
        assert f"upstream-{reason}" in anchors(text)


def _module(*args: str, module: str = "tools.generate") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO)


def test_cli_prints_the_runbook() -> None:
    result = _module(module="tools.generate.runbook")
    assert result.returncode == 0 and result.stdout == runbook.render()


def test_cli_check_and_write(tmp_path: Path) -> None:
    """`make check` and `make generate` (python -m tools.generate [--check]) on a copy of the repository."""
    assert _module("--check").returncode == 0
    (tmp_path / "docs").mkdir()
    (tmp_path / "prometheus").mkdir()
    shutil.copy(RUNBOOK, tmp_path / "docs" / "runbook.md")
    shutil.copy(REPO / "prometheus" / "recording.yml", tmp_path / "prometheus" / "recording.yml")
    alerts = ALERTS.read_text()
    # Someone edits a description by hand and the runbook by hand: both are stale now.
    edited = alerts.replace("Reach", "Maybe reach", 1)
    assert edited != alerts
    (tmp_path / "prometheus" / "alerts.yml").write_text(edited)
    with open(tmp_path / "docs" / "runbook.md", "a") as out:
        out.write("hand-written line\n")
    result = _module("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "docs/runbook.md" in result.stderr and "prometheus/alerts.yml" in result.stderr
    # Writing regenerates both, byte for byte what the repository holds; comments survive.
    assert _module("--root", str(tmp_path)).returncode == 0
    assert (tmp_path / "docs" / "runbook.md").read_text() == RUNBOOK.read_text()
    assert (tmp_path / "prometheus" / "alerts.yml").read_text() == alerts
    assert _module("--check", "--root", str(tmp_path)).returncode == 0


def test_sync_fills_empty_annotations_and_keeps_comments() -> None:
    text = "groups:\n  - name: g\n    rules:\n      # keep me\n      - alert: SinchSmsAccountBlocked\n"
    text += "        expr: vector(1)\n        annotations: {}\n\n"
    text += "      # and me\n      - record: r\n        expr: vector(1)\n"
    synced = rules_generator.sync_alerts(text)
    assert "# keep me" in synced and "# and me" in synced
    doc = YAML(typ="safe").load(synced)
    assert doc["groups"][0]["rules"][0]["annotations"]["runbook_url"].endswith("#code-blocked_account")
    assert rules_generator.sync_alerts(synced) == synced


def test_sync_refuses_an_alert_without_a_runbook_entry() -> None:
    with pytest.raises(ValueError, match="SinchSmsSomethingNew"):
        rules_generator.sync_alerts(
            "groups:\n  - name: g\n    rules:\n      - alert: SinchSmsSomethingNew\n        expr: x\n"
        )


def test_other_statuses_and_no_code_have_sections() -> None:
    """Statuses the catalog does not document (a gateway's 502, 504, …) and answers without a
    code get sections too: the dashboards' data links open them."""
    text = RUNBOOK.read_text()
    assert not set(alerts.OTHER_STATUSES) & set(catalog.STATUSES)
    for status, (reason, meaning) in alerts.OTHER_STATUSES.items():
        assert 400 <= status <= 599 and f'<a id="status-{status}"></a>{status} {reason}' in text
        assert " ".join(meaning.split()) in " ".join(text.split())
    for status in (502, 504):
        body = section(text, f"status-{status}")
        assert f"`{alerts.ALERT_SERVER_ERROR_SPIKE}`" in body and "upstream" in body.lower()
    body = section(text, f"code-{labels.NO_CODE_SHOWN}")
    assert 'code=""' in body and "(#other-statuses)" in body
    assert "--code-cap" in section(text, "code-other")
