"""tools.generate: every generated file is current, `--check` names what is stale, writing
restores the repository's bytes, the dashboards keep their identity, and the runbook URL is
written once (tools.generate.RUNBOOK_URL) whatever links to the runbook."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sinch_sms_exporter.contract import alerts, delivery, labels
from tests.helpers.paths import REPO
from tools import generate
from tools.generate import __main__ as cli
from tools.generate import alert_rules, dashboards

#: The files `make generate` writes, in the order it renders them.
GENERATED = [
    "docs/runbook.md",
    "prometheus/alerts.yml",
    "deploy/kubernetes/prometheusrule.yaml",
    "dashboards/sinch-sms-overview.json",
    "dashboards/sinch-sms-drilldown.json",
]
UIDS = {dashboards.OVERVIEW: "sinch-sms-overview", dashboards.DRILLDOWN: "sinch-sms-drilldown"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.generate", *args], capture_output=True, text=True, cwd=REPO)


def _copy_sources(root: Path) -> None:
    """What the generators read from a checkout: the rule files (the rest is code)."""
    (root / "prometheus").mkdir(parents=True)
    for name in cli.SOURCES:
        shutil.copy(REPO / name, root / name)


def test_every_generated_file_is_current() -> None:
    assert list(cli.render_all(REPO)) == GENERATED
    assert cli.stale(REPO) == [], "run `make generate`"
    result = _run("--check")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_check_names_what_is_stale_and_writing_restores_the_repository(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    # Nothing written yet: everything is stale, the rule file's annotations included.
    alerts_yml = tmp_path / "prometheus" / "alerts.yml"
    alerts_yml.write_text(alerts_yml.read_text().replace("Sinch answered", "Sinch said", 1))
    result = _run("--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert all(path in result.stderr for path in GENERATED) and "make generate" in result.stderr
    assert not (tmp_path / "docs").exists(), "--check writes nothing"
    result = _run("--root", str(tmp_path))
    assert result.returncode == 0 and all(path in result.stdout for path in GENERATED)
    for path in GENERATED:
        assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), path
    assert _run("--check", "--root", str(tmp_path)).returncode == 0
    # A hand edit of one dashboard: only that file is stale, and a second run is a no-op after the fix.
    board = tmp_path / "dashboards" / dashboards.OVERVIEW
    board.write_text(board.read_text().replace('"Answers/s"', '"Answers per second"'))
    assert cli.stale(tmp_path) == ["dashboards/sinch-sms-overview.json"]
    assert cli.write(tmp_path) == ["dashboards/sinch-sms-overview.json"]
    assert cli.write(tmp_path) == []


def test_a_missing_checkout_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = _run("--check", "--root", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_a_broken_rule_file_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    (tmp_path / "prometheus" / "alerts.yml").write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: SinchSmsSomethingNew\n        expr: x\n"
    )
    result = _run("--root", str(tmp_path))
    assert result.returncode == 1 and "SinchSmsSomethingNew" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "docs").exists() and not (tmp_path / "dashboards").exists()


def test_dashboards_keep_uid_schema_and_datasource_variable() -> None:
    for name, text in dashboards.render_all().items():
        board = json.loads(text)
        assert board["uid"] == UIDS[name] and board["id"] is None
        assert board["schemaVersion"] == 41
        grafana = next(r for r in board["__requires"] if r["id"] == "grafana")
        assert grafana["version"] == dashboards.GRAFANA_VERSION == "11.6.0"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        assert variables["job"]["query"] == alerts.EXPORTER_JOB
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["definition"] == variable["query"]["query"], variable["name"]
                assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ids = [panel["id"] for panel in board["panels"]]
        assert ids == list(range(1, len(ids) + 1)), "panels numbered in order: ids stay stable when one is appended"


def test_the_delivery_row_reads_the_callback_metrics() -> None:
    board = json.loads(dashboards.render_all()[dashboards.OVERVIEW])
    titles = [p["title"] for p in board["panels"]]
    row = titles.index("Delivery")
    panels = {p["title"]: p for p in board["panels"][row + 1 :]}
    assert set(panels) == {
        "Delivery rate",
        "Delivery status mix",
        "Top delivery failure codes",
        "Callbacks by receiver answer",
        "Callback errors by reason",
    }
    expr = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}
    final = "|".join(labels.FINAL_DELIVERY_STATUSES)
    assert 'status="delivered"' in expr["Delivery rate"] and f'status=~"{final}"' in expr["Delivery rate"]
    assert set(labels.FINAL_DELIVERY_STATUSES) == {
        "aborted",
        "cancelled",
        "rejected",
        "deleted",
        "delivered",
        "failed",
        "expired",
        "unknown",
    }
    failures = re.search(r'status=~"([^"]+)"', expr["Top delivery failure codes"]).group(1)
    # Failures are what SinchSmsDeliveryFailureRate counts: neither cancelled nor unknown.
    assert set(failures.split("|")) == set(labels.FAILED_DELIVERY_STATUSES)
    assert set(failures.split("|")) <= set(labels.FINAL_DELIVERY_STATUSES) - {"delivered", "cancelled", "unknown"}
    assert "sinch_sms_callbacks_total" in expr["Callbacks by receiver answer"]
    assert "sum by (reason)" in expr["Callback errors by reason"]
    assert "sinch_sms_callback_errors_total" in expr["Callback errors by reason"]
    table = panels["Top delivery failure codes"]
    assert table["targets"][0]["format"] == "table" and table["targets"][0]["instant"] is True
    (link,) = table["fieldConfig"]["defaults"]["links"]
    assert link["url"] == generate.RUNBOOK_URL + "#delivery-code-${__data.fields.runbook_code}"
    # The column the link reads stays in the frame (not removed by `organize`), hidden in the table.
    (override,) = table["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byName", "options": "runbook_code"}
    assert override["properties"] == [{"id": "custom.hidden", "value": True}]
    assert "runbook_code" not in table["transformations"][0]["options"]["excludeByName"]
    # It names a documented code (contract/delivery.py, the runbook's anchors) or `none`.
    documented = re.search(r'"runbook_code", "\$1", "code", "\(([^)]*)\)"', expr["Top delivery failure codes"])
    assert documented and set(documented.group(1).split("|")) == set(delivery.CODE_INFO)
    # Below everything that was there before: the old panels keep their ids and places.
    assert min(p["gridPos"]["y"] for p in board["panels"][row:]) >= max(
        p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"][:row]
    )


def _sources() -> list[Path]:
    return [p for d in ("addon", "tools", "tests", "bench") for p in (REPO / d).rglob("*.py")]


def test_the_runbook_url_is_written_once() -> None:
    """In code only as tools.generate.RUNBOOK_URL; the generated files carry it everywhere."""
    holders = [p.relative_to(REPO) for p in _sources() if generate.RUNBOOK_URL in p.read_text()]
    assert holders == [Path("tools/generate/__init__.py")]
    for path in GENERATED:
        assert generate.RUNBOOK_URL in (REPO / path).read_text() or path.endswith("runbook.md"), path


def test_changing_the_runbook_url_moves_every_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork changes the one setting: every dashboard link and every alert's runbook_url follow."""
    before = cli.render_all(REPO)
    old = generate.RUNBOOK_URL
    new = "https://runbooks.example.org/sinch.md"
    monkeypatch.setattr(generate, "RUNBOOK_URL", new)
    after = cli.render_all(REPO)
    assert sum(text.count(old) for text in before.values()) >= 27 + len(alerts.ALERTS)
    for path in GENERATED:
        assert old not in after[path], path
        assert after[path].count(new) == before[path].count(old), path
    assert {r: a["runbook_url"] for r, a in _annotations(after).items()} == {
        r: a["runbook_url"].replace(old, "https://runbooks.example.org/sinch.md")
        for r, a in _annotations(before).items()
    }


def _annotations(rendered: dict[str, str]) -> dict[str, dict]:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(rendered["prometheus/alerts.yml"])
    return {r["alert"]: r["annotations"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_annotations_of_every_alert_come_from_contract_alerts() -> None:
    for name, rendered in _annotations(cli.render_all(REPO)).items():
        assert rendered == alert_rules.annotations_of(alerts.ALERTS_BY_NAME[name]), name
