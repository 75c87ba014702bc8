"""Grafana dashboards without a Grafana: their structure by Grafana's conventions, and every panel
query, template variables filled in (All, single and several values), run as Grafana runs it
(instant and range queries) against a real Prometheus that scrapes the real proxy (with the real
rules loaded) while the demo's own traffic flows (demo.py: its opening round and traffic.py's
generator, in front of the simulator's demo scenario, with the callbacks `make demo` runs:
delivery reports and inbound messages through a callback listener to the demo's receiver);
values are checked where the traffic determines them. Two expressions whose values no random
traffic pins down (error shares without errors, latency over several regions) are checked by
promtool on fixed series."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sinch_sms_exporter.contract import alerts, catalog, delivery, labels
from sinch_sms_exporter.contract.labels import NO_CODE_SHOWN
from sinch_sms_exporter.sim import callbacks, traffic
from tests.helpers.client import scrape
from tests.helpers.paths import REPO
from tests.helpers.processes import (
    free_port,
    running,
    start,
    start_proxy,
    start_simulator,
    wait_for_port,
    wait_until,
)
from tests.helpers.prometheus import prom_query, prom_range, start_prometheus, system_tool
from tools import demo, generate

DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted((REPO / "dashboards").glob("*.json"))}
OVERVIEW, DRILLDOWN = "sinch-sms-overview.json", "sinch-sms-drilldown.json"
#: File → uid. uids are how links, bookmarks and provisioning find a dashboard: never change them.
UIDS = {OVERVIEW: "sinch-sms-overview", DRILLDOWN: "sinch-sms-drilldown"}
#: The schema version Grafana 11.6 and 12 save (schema 40: `refresh` is a string; 41: no
#: `timepicker.time_options`).
SCHEMA_VERSION = 41
UNITS = {"reqps", "s", "percentunit", "short", "bytes"}
JOB = "sinch-sms-exporter"
SCRAPE_INTERVAL = "1s"
#: What Grafana puts in place of its built-in variables, for this test's 1 s scrape interval
#: ($__rate_interval is at least four scrape intervals; a minute is safely more). Range queries
#: cover RANGE seconds in steps of STEP, as a time series panel asks /api/v1/query_range.
RANGE, STEP = 120, 5
BUILTINS = {"__rate_interval": "1m", "__interval": f"{STEP}s", "__range": "5m"}
RANGE_BUILTINS = {**BUILTINS, "__range": f"{RANGE}s"}
RECORDING = YAML(typ="safe").load((REPO / "prometheus" / "recording.yml").read_text())
RECORDS = {r["record"] for g in RECORDING["groups"] for r in g["rules"]}
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
RUNBOOK_ANCHORS = set(re.findall(r'<a id="([^"]+)"></a>', (REPO / "docs" / "runbook.md").read_text()))
#: The regions of the stack: one listener (and one simulator) each, as a sidecar serving two
#: Sinch regions would run.
REGIONS = ("us", "eu")
#: A region no traffic went to: panels with `or vector(0)` must show 0 there, not no data.
NOWHERE = "au"
#: The Delivery row's metrics: what the callback listeners count (docs/dashboards.md, "Delivery").
DELIVERY_METRICS = {"sinch_sms_callbacks_total", "sinch_sms_callback_errors_total", "sinch_sms_delivery_reports_total"}


def panels(board: dict) -> Iterator[dict]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(board: dict) -> dict[str, dict]:
    return {v["name"]: v for v in board["templating"]["list"]}


def exprs(board: dict) -> Iterator[tuple[dict, dict]]:
    for panel in panels(board):
        for target in panel["targets"]:
            yield panel, target


def all_dashboard_exprs() -> list[str]:
    return [t["expr"] for b in DASHBOARDS.values() for _, t in exprs(b)]


def rule_exprs() -> list[str]:
    out = []
    for name in ("alerts.yml", "recording.yml"):
        doc = YAML(typ="safe").load((REPO / "prometheus" / name).read_text())
        out += [r["expr"] for g in doc["groups"] for r in g["rules"]]
    return out


def _regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value or "All" variable's value in a Prometheus query
    (prometheusSpecialRegexEscape): regex metacharacters get a backslash, doubled for the
    PromQL string literal (`batches/{batch_id}` → `batches/\\\\{batch_id\\\\}`)."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def fill(expr: str, board: dict, builtins: dict[str, str] = BUILTINS, **chosen: str | list[str]) -> str:
    """The query Grafana sends: template variables replaced. Unchosen: All (the variable's
    allValue); chosen: one value (regex-escaped) or several (`(a|b)`)."""
    defined = variables(board)

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name.isdigit():  # label_replace's `$1`: no variable has that name, Grafana leaves it
            return match.group(0)
        assert name in defined, f"undefined template variable ${name} in {expr}"
        var = defined[name]
        if var["type"] == "textbox":
            return str(chosen.get(name, var["query"]))
        if name in chosen:
            picked = chosen[name]
            if isinstance(picked, str):
                return _regex_escape(picked)
            return "(" + "|".join(map(_regex_escape, picked)) + ")"
        return var.get("allValue") or ".*"

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def links(panel: dict) -> list[dict]:
    return panel.get("links", []) + panel["fieldConfig"]["defaults"].get("links", [])


# --- structure ------------------------------------------------------------------------------------


def test_the_dashboards_are_there_with_stable_unique_uids() -> None:
    assert {name: board["uid"] for name, board in DASHBOARDS.items()} == UIDS
    for board in DASHBOARDS.values():
        assert board["id"] is None, "a fixed id breaks import into another Grafana"
        assert board["schemaVersion"] == SCHEMA_VERSION
        # What the migrations up to 41 change, already so: Grafana rewrites nothing on load.
        assert isinstance(board["refresh"], str), "schema 40: refresh is a string"
        assert "time_options" not in board.get("timepicker", {}), "schema 41: no timepicker.time_options"
        grafana = next(r for r in board["__requires"] if r["id"] == "grafana")
        assert tuple(map(int, grafana["version"].split("."))) >= (11, 6, 0)
        nested = [p for row in board["panels"] for p in row.get("panels", [])]
        ids = [p["id"] for p in board["panels"] + nested]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        titles = [p["title"] for p in panels(board)]
        assert len(titles) == len(set(titles)), "panel titles must be unique"
        assert "sinch-sms" in board["tags"]


def test_datasource_is_a_variable_everywhere() -> None:
    for name, board in DASHBOARDS.items():
        ds = variables(board)["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus", name
        for panel, target in exprs(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, var["name"]
        # No datasource is named or hard-wired anywhere (import works in any Grafana).
        text = json.dumps(board)
        assert "__inputs" not in board and "${DS_" not in text


def test_region_endpoint_instance_variables() -> None:
    for name, board in DASHBOARDS.items():
        defined = variables(board)
        for var in ("region", "endpoint", "instance"):
            assert defined[var]["type"] == "query", (name, var)
            assert defined[var]["definition"].startswith("label_values("), (name, var)
            assert defined[var]["includeAll"] and defined[var]["multi"], (name, var)
        assert defined["job"]["query"] == JOB, "the job convention of the alert rules"
        # Every variable is used by some panel.
        used = " ".join(all_dashboard_exprs_of(board) + [v.get("definition", "") for v in defined.values()])
        for var in defined:
            assert f"${var}" in used or var == "datasource", (name, var)


def all_dashboard_exprs_of(board: dict) -> list[str]:
    return [t["expr"] for _, t in exprs(board)]


def test_every_panel_has_a_unit_a_description_and_queries() -> None:
    for name, board in DASHBOARDS.items():
        for panel in panels(board):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit in UNITS, f"{name}: {panel['title']!r} unit {unit!r}"
            assert len(panel.get("description", "")) > 30, f"{name}: {panel['title']!r} needs a description"
            assert panel["targets"], panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))


def test_raw_series_use_grafana_intervals_and_heavy_ones_come_from_recording_rules() -> None:
    for name, board in DASHBOARDS.items():
        for panel, target in exprs(board):
            for window in re.findall(r"\[([^\]]+)\]", target["expr"]):
                assert window in ("$__rate_interval", "$__range"), f"{name}: {panel['title']!r} uses [{window}]"
            for recorded in RECORDED_NAME.findall(target["expr"]):
                assert recorded in RECORDS, f"{name}: {panel['title']!r} reads unknown {recorded}"
    # Quantiles from buckets summed over the selection (several regions give the quantile of
    # all their answers), never an aggregate of per-region quantiles.
    for name, board in DASHBOARDS.items():
        for panel, target in exprs(board):
            if "histogram_quantile" in target["expr"] or "quantile" in panel["title"].lower():
                assert re.search(r"histogram_quantile\([0-9.]+, sum by \(le\b", target["expr"]), (name, panel["title"])
            assert "quantile_rate5m" not in target["expr"], (name, panel["title"])
    latency = next(p for p in panels(DASHBOARDS[OVERVIEW]) if p["title"].startswith("Latency"))
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
    ]
    assert all("sinch_sms_request_duration_seconds_bucket:rate5m" in t["expr"] for t in latency["targets"])


def test_the_layout_fits_and_nothing_overlaps() -> None:
    for name, board in DASHBOARDS.items():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            area = set(itertools.product(range(pos["x"], pos["x"] + pos["w"]), range(pos["y"], pos["y"] + pos["h"])))
            assert not cells & area, f"{name}: {panel['title']!r} overlaps another panel"
            cells |= area


def test_blocked_account_is_front_and_centre() -> None:
    overview = DASHBOARDS["sinch-sms-overview.json"]
    first = overview["panels"][0]
    assert "blocked_account" in first["title"] and first["gridPos"]["y"] == 0 and first["gridPos"]["x"] == 0
    assert 'code="blocked_account"' in first["targets"][0]["expr"]
    steps = first["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 1}, "one blocked answer turns it red"


ERROR_MARKERS = ('status=~"4..|5.."', "blocked_account", "missing_callback_url", "upstream_errors", "4xx|5xx")


def test_error_panels_link_to_the_runbook() -> None:
    for name, board in DASHBOARDS.items():
        for panel in panels(board):
            text = " ".join(t["expr"] for t in panel["targets"])
            if any(marker in text for marker in ERROR_MARKERS):
                urls = [link["url"] for link in links(panel)]
                assert any(u.startswith(generate.RUNBOOK_URL) for u in urls), f"{name}: {panel['title']!r}"


#: A data link's variables: a series' label (time series, stat) or a row's field (table frames).
LINK_VARIABLE = re.compile(r"\$\{__(field\.labels|data\.fields)\.(\w+)\}")


def is_table_frame(panel: dict) -> bool:
    return panel["type"] == "table" and all(t.get("format") == "table" for t in panel["targets"])


def test_every_runbook_link_lands_on_a_section() -> None:
    existing = RUNBOOK_ANCHORS | {"alerts", "http-statuses", "error-codes", "upstream-errors"}  # ## headings
    # What a data link's anchor starts with: an existing anchor's, up to its last `-`.
    prefixes = {a.rpartition("-")[0] + "-" for a in existing if "-" in a}
    found = 0
    for board in DASHBOARDS.values():
        for link in [*board["links"], *(link for p in panels(board) for link in links(p))]:
            url = link.get("url", "")
            if not url.startswith(generate.RUNBOOK_URL):
                continue
            found += 1
            anchor = url.partition("#")[2]
            if "${" in anchor:  # a data link: the label completes the anchor (resolved in the e2e test)
                assert anchor.split("$")[0] in prefixes, url
                if anchor.startswith("delivery-code-"):  # every code the link can complete to
                    codes = {*delivery.CODE_INFO, NO_CODE_SHOWN}
                    assert {f"delivery-code-{c}" for c in codes} <= RUNBOOK_ANCHORS, url
            else:
                assert anchor == "" or anchor in existing, f"{url} points at no section"
    assert found >= 10


def test_data_links_read_what_the_frame_carries() -> None:
    """A table frame (format: table) has the labels as columns: its links read the row
    (`__data.fields`); every other panel's read the series' labels (`__field.labels`). A link on
    `code` needs the series to carry it: Prometheus drops the empty code label, so those
    queries relabel it to NO_CODE_SHOWN."""
    for name, board in DASHBOARDS.items():
        for panel in panels(board):
            used = {m.groups() for link in links(panel) for m in LINK_VARIABLE.finditer(link["url"])}
            if not used:
                continue
            kind = "data.fields" if is_table_frame(panel) else "field.labels"
            assert {k for k, _ in used} == {kind}, (name, panel["title"], used)
            if any(label == "code" for _, label in used):
                for target in panel["targets"]:
                    assert f'"code", "{NO_CODE_SHOWN}", "code", ""' in target["expr"], (name, panel["title"])


def test_the_runbook_has_a_section_for_every_status_and_no_code() -> None:
    """What a data link can open: every standard 4xx/5xx (the catalog's and the others, which a
    gateway may answer), every catalog code, no code, and `other`."""
    statuses = {s.value for s in HTTPStatus if 400 <= s.value <= 599}
    assert {f"status-{s}" for s in statuses} <= RUNBOOK_ANCHORS
    assert {f"code-{c}" for c in catalog.CODES} | {f"code-{NO_CODE_SHOWN}", "code-other"} <= RUNBOOK_ANCHORS
    assert NO_CODE_SHOWN not in catalog.CODES


def test_provisioning_files() -> None:
    yaml = YAML(typ="safe")
    prov = REPO / "dashboards" / "provisioning"
    (datasource,) = yaml.load((prov / "datasources" / "sinch-sms-prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    (provider,) = yaml.load((prov / "dashboards" / "sinch-sms.yml").read_text())["providers"]
    assert provider["type"] == "file"
    # The mount points docs/dashboards.md documents and the compose stack uses.
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert f"`{path}`" in (REPO / "docs" / "dashboards.md").read_text()
    compose = REPO / "docker-compose.yml"
    if compose.exists():
        volumes = yaml.load(compose.read_text())["services"]["grafana"]["volumes"]
        assert f"./dashboards:{path}:ro" in volumes
        assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in volumes


# --- promtool: values no random traffic pins down --------------------------------------------------


def _promtool_expr_test(tmp_path: Path, series: dict[str, str], cases: list[dict]) -> subprocess.CompletedProcess:
    """Run promql_expr_test cases over fixed input series, with the recording rules loaded."""
    doc = {
        "rule_files": [str(REPO / "prometheus" / "recording.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": cases,
            }
        ],
    }
    path = tmp_path / "dashboard_test.yml"
    with open(path, "w") as out:
        YAML(typ="safe").dump(doc, out)
    return subprocess.run(
        [system_tool("promtool"), "test", "rules", path.name], capture_output=True, text=True, cwd=tmp_path
    )


def _panel(board_name: str, title: str) -> dict:
    return next(p for p in panels(DASHBOARDS[board_name]) if p["title"] == title)


def _expr(board_name: str, title: str, ref: str = "A", **chosen: str) -> str:
    target = next(t for t in _panel(board_name, title)["targets"] if t["refId"] == ref)
    return fill(target["expr"], DASHBOARDS[board_name], **chosen)


def _answers(region: str, status: str, per_minute: int, endpoint: str = "batches") -> tuple[str, str]:
    where = f'region="{region}",instance="{region}:19880",job="{JOB}"'
    labels = f'{where},endpoint="{endpoint}",method="POST",status="{status}",code=""'
    return f"sinch_sms_responses_total{{{labels}}}", f"0+{per_minute}x30"


def test_error_shares_are_zero_where_there_is_traffic_and_no_error(tmp_path: Path) -> None:
    """Traffic without a single error: every error-share panel shows 0 (for each class, each
    endpoint), not "No data"; and an error shows its real share beside the zeros."""
    series = dict([_answers("us", "201", 60), _answers("us", "200", 30, "batches/{batch_id}")])
    zero_share = [
        (OVERVIEW, "Error share", ["{}"]),
        (OVERVIEW, "Error share by status class", ['{status_class="4xx"}', '{status_class="5xx"}']),
        (DRILLDOWN, "Error share by endpoint", ['{endpoint="batches"}', '{endpoint="batches/{batch_id}"}']),
    ]
    cases = [
        {"expr": _expr(board, title), "eval_time": "10m", "exp_samples": [{"labels": lb, "value": 0} for lb in labels]}
        for board, title, labels in zero_share
    ]
    result = _promtool_expr_test(tmp_path, series, cases)
    assert result.returncode == 0, result.stdout + result.stderr
    # One 503 a minute beside the 60 + 30 successes: 1/91 for 5xx, 0 for 4xx, 1/61 on batches.
    series.update([_answers("us", "503", 1)])
    cases = [
        {
            "expr": f"{_expr(OVERVIEW, 'Error share by status class')}",
            "eval_time": "10m",
            "exp_samples": [
                {"labels": '{status_class="4xx"}', "value": 0},
                {"labels": '{status_class="5xx"}', "value": 1 / 91},
            ],
        },
        {
            "expr": f"{_expr(DRILLDOWN, 'Error share by endpoint')}",
            "eval_time": "10m",
            "exp_samples": [
                {"labels": '{endpoint="batches"}', "value": 1 / 61},
                {"labels": '{endpoint="batches/{batch_id}"}', "value": 0},
            ],
        },
    ]
    result = _promtool_expr_test(tmp_path, series, cases)
    assert result.returncode == 0, result.stdout + result.stderr


def test_latency_of_several_regions_is_the_quantile_of_all_their_answers(tmp_path: Path) -> None:
    """us answers within 0.1 s, eu between 0.5 and 1 s, as many each: over both, the median is
    0.1 s (half the answers are that fast) and p99 0.99 s. The maximum of per-region medians
    would say 0.75 s."""
    series = {}
    for region, counts in (("us", (60, 60, 60, 60)), ("eu", (0, 0, 60, 60))):
        for le, count in zip(("0.1", "0.5", "1", "+Inf"), counts, strict=True):
            where = f'region="{region}",instance="{region}:19880",job="{JOB}"'
            labels = f'{where},endpoint="batches",method="POST",status_class="2xx",le="{le}"'
            series[f"sinch_sms_request_duration_seconds_bucket{{{labels}}}"] = f"0+{count}x30"
    title = "Latency p50 / p95 / p99 by endpoint"
    cases = [
        {
            "expr": _expr(OVERVIEW, title, "A"),
            "eval_time": "10m",
            "exp_samples": [{"labels": '{endpoint="batches"}', "value": 0.1}],
        },
        {
            "expr": f"abs({_expr(OVERVIEW, title, 'C')} - 0.99) < bool 1e-9",
            "eval_time": "10m",
            "exp_samples": [{"labels": '{endpoint="batches"}', "value": 1}],
        },
        # One region selected: its own quantile.
        {
            "expr": f"abs({_expr(OVERVIEW, title, 'A', region='eu')} - 0.75) < bool 1e-9",
            "eval_time": "10m",
            "exp_samples": [{"labels": '{endpoint="batches"}', "value": 1}],
        },
        {
            "expr": _expr(OVERVIEW, "p95 latency, all endpoints", region=["us", "eu"]),
            "eval_time": "10m",
            "exp_samples": [{"labels": "{}", "value": 0.95}],
        },
    ]
    result = _promtool_expr_test(tmp_path, series, cases)
    assert result.returncode == 0, result.stdout + result.stderr


def test_delivery_row_values_on_fixed_reports(tmp_path: Path) -> None:
    """Per minute: 90 delivered, 6 failed (code 402), 4 expired without a code, 100 queued. The
    delivery rate is 90 of the 100 final ones; the mix gives every status its share of all 200;
    the failure table lists the failed and expired codes (`none` for the missing one), never
    delivered or queued."""
    where = f'job="{JOB}",instance="a:19880",type="recipient_delivery_report_sms"'
    series = {
        f'sinch_sms_delivery_reports_total{{{where},status="{status}",code="{code}"}}': f"0+{n}x30"
        for status, code, n in (("delivered", "0", 90), ("failed", "402", 6), ("expired", "", 4), ("queued", "", 100))
    }
    board = DASHBOARDS[OVERVIEW]
    windows = {**BUILTINS, "__rate_interval": "5m", "__range": "10m"}

    def expr(title: str) -> str:
        return fill(_panel(OVERVIEW, title)["targets"][0]["expr"], board, windows)

    mix = {"delivered": 0.45, "failed": 0.03, "expired": 0.02, "queued": 0.5}
    cases = [
        {
            "expr": f"abs({expr('Delivery rate')} - 0.9) < bool 1e-9",
            "eval_time": "20m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        },
        {
            "expr": f"abs({expr('Delivery status mix')} - on (status) {_vector(mix)}) < bool 1e-9",
            "eval_time": "20m",
            "exp_samples": [{"labels": f'{{status="{s}"}}', "value": 1} for s in mix],
        },
        {
            "expr": f"count by (status, code) ({expr('Top delivery failure codes')})",
            "eval_time": "20m",
            "exp_samples": [
                {"labels": '{code="402", status="failed"}', "value": 1},
                {"labels": f'{{code="{NO_CODE_SHOWN}", status="expired"}}', "value": 1},
            ],
        },
    ]
    result = _promtool_expr_test(tmp_path, series, cases)
    assert result.returncode == 0, result.stdout + result.stderr


def _vector(values: dict[str, float]) -> str:
    """A PromQL vector with one series per status: `label_replace(vector(v), "status", …)`."""
    return "(" + " or ".join(f'label_replace(vector({v}), "status", "{k}", "", "")' for k, v in values.items()) + ")"


# --- against a real Prometheus scraping the real proxy, fed by the demo's traffic --------------------


#: Not NaN: the recording rules have seen answers of POST batches in a region.
LATENCY_KNOWN = 'region_endpoint:sinch_sms_request_duration_seconds:quantile_rate5m{endpoint="batches"} >= 0'


#: Ready when these return something: the Delivery row's raw series and recorded ones, and a
#: callback error (the listener whose receiver is down).
DELIVERY_READY = (
    'sinch_sms_delivery_reports_total{status="delivered"}',
    "type_status_code:sinch_sms_delivery_reports:rate5m",
    "status:sinch_sms_delivery_reports:ratio_rate15m",
    'type_status:sinch_sms_callbacks:rate5m{type="mo_text"}',
    'rate(sinch_sms_callback_errors_total{reason="connect"}[1m]) > 0',
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    """Per region, a simulator as `make demo` starts it (demo.SIMULATOR_ARGS, seeded), one proxy
    with a listener per region (demo.PROXY_ARGS), and the demo's traffic through each listener:
    demo.opening_round, then demo.generator at the demo's rate. Callbacks as `make demo` runs
    them: the service's receiver (demo.receiver_command: 5 % answered 500, so Sinch retries)
    behind the proxy's callback listener (demo.callback_args), batches asking for delivery
    reports there, demo.inbound_round; and a second callback listener whose receiver is down,
    to which the simulator sends inbound messages (connect errors, retried on Sinch's schedule)."""
    system_tool("prometheus")
    tmp = tmp_path_factory.mktemp("dashboards")
    sim_args = demo.SIMULATOR_ARGS
    receiver_port, callback_port, dead_callback_port = free_port(), free_port(), free_port()
    receiver = start(demo.receiver_command(receiver_port, seed=3), tmp / "receiver.log")
    with (
        running(receiver),
        running(start_simulator(tmp, *sim_args, "--seed", "1")) as sim_us,
        running(start_simulator(tmp, *sim_args, "--seed", "2")) as sim_eu,
    ):
        wait_for_port(receiver_port, proc=receiver.popen)
        us, eu = (f"http://127.0.0.1:{sim.ports['http']}" for sim in (sim_us, sim_eu))
        eu_port = free_port()
        proxy = start_proxy(
            tmp, us, "--region", "us", "--upstream", f"{eu}@{eu_port}", "--region", "eu", *demo.PROXY_ARGS,
            *demo.callback_args(receiver_port, callback_port),
            "--callback-upstream", f"http://127.0.0.1:{free_port()}@{dead_callback_port}",
            region=None,
        )  # fmt: skip
        with running(proxy):
            for listener in (callback_port, dead_callback_port):
                wait_for_port(listener, proc=proxy.popen)
            urls = {"us": f"http://127.0.0.1:{proxy.ports['listen']}", "eu": f"http://127.0.0.1:{eu_port}"}
            opening = {region: demo.opening_round(url) for region, url in urls.items()}
            for sim in (sim_us, sim_eu):
                demo.inbound_round(sim.ports["http"], callback_port)
            demo.inbound_round(sim_us.ports["http"], dead_callback_port)
            generators = {region: demo.generator(url, callback_port=callback_port) for region, url in urls.items()}
            threads = [threading.Thread(target=g.run, daemon=True) for g in generators.values()]
            for thread in threads:
                thread.start()
            config = f"""
global:
  scrape_interval: {SCRAPE_INTERVAL}
  evaluation_interval: {SCRAPE_INTERVAL}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{proxy.ports["metrics"]}"]
"""
            rules = [REPO / "prometheus" / "alerts.yml", REPO / "prometheus" / "recording.yml"]
            try:
                with running(start_prometheus(tmp, config, rule_files=rules)) as prom:
                    port = prom.ports["http"]

                    def regions(expr: str) -> set[str]:
                        return {r["metric"].get("region") for r in prom_query(port, expr)["result"]}

                    # Ready when the rules and alerts have seen the demo's traffic in both regions,
                    # and the Delivery row's series the callbacks.
                    wait_until(
                        lambda: (
                            all(
                                regions(expr) == set(REGIONS)
                                for expr in (
                                    "region:sinch_sms_client_aborts:rate5m > 0",
                                    "region_reason:sinch_sms_upstream_errors:rate5m",
                                    LATENCY_KNOWN,
                                    'ALERTS{alertname="SinchSmsAccountBlocked",alertstate="firing"}',
                                    'ALERTS{alertname="SinchSmsMissingCallbackUrl",alertstate="firing"}',
                                )
                            )
                            and all(prom_query(port, expr)["result"] for expr in DELIVERY_READY)
                        ),
                        timeout=90,
                        what="rules and alerts fed by the demo's traffic",
                    )
                    # Every query below is evaluated at one instant, so that panels agree.
                    at = time.time()
                    instance = f"127.0.0.1:{proxy.ports['metrics']}"
                    yield {
                        "port": port,
                        "proxy": proxy,
                        "at": at,
                        "instance": instance,
                        "opening": opening,
                        "generators": generators,
                        "receiver": f"http://127.0.0.1:{receiver_port}",
                    }
            finally:
                for g in generators.values():
                    g.stop.set()
                for thread in threads:
                    thread.join(10)


def fillings(stack: dict) -> dict[str, dict[str, str | list[str]]]:
    """Variable choices Grafana sends: All; one of everything the demo's opening round surely
    produced (us, POST batches, the one proxy); and other single values (eu, an endpoint whose
    name needs regex escaping, GET, one code, both regions as a multi-value)."""
    return {
        "All": {},
        "single": {"region": "us", "endpoint": "batches", "method": "POST", "instance": stack["instance"]},
        "other": {
            "region": "eu",
            "endpoint": "batches/{batch_id}",
            "method": "GET",
            "code": "syntax_invalid_json",
            "instance": [stack["instance"]],
        },
        "multi": {"region": list(REGIONS), "endpoint": ["batches", "batches/{batch_id}"]},
    }


def run_target(stack: dict, board: dict, target: dict, **chosen) -> tuple[list, list]:
    """A target's instant result and range result (each run as Grafana would run it)."""
    port, at = stack["port"], stack["at"]
    instant = prom_query(port, fill(target["expr"], board, **chosen), at=at)["result"]
    ranged = prom_range(port, fill(target["expr"], board, RANGE_BUILTINS, **chosen), at - RANGE, at, STEP)["result"]
    return instant, ranged


def values(result: list) -> list[float]:
    """Every sample value of an instant (value) or range (values) result."""
    out = []
    for series in result:
        pairs = series["values"] if "values" in series else [series["value"]]
        out += [float(v) for _, v in pairs]
    return out


def _unit_ok(unit: str, value: float) -> bool:
    if math.isnan(value):  # Grafana draws NaN (0/0, no answer in a window) as a gap
        return True
    if unit == "percentunit":
        return 0.0 <= value <= 1.0
    return value >= 0.0


@pytest.mark.e2e
@pytest.mark.slow
def test_every_panel_query_runs_as_instant_and_range_query_and_returns_data(stack) -> None:
    """With every filling, every target runs, instant and range, and its values fit its unit;
    with All, with the single values of the opening round and with several values, every
    target (the Delivery row's included) returns data, in the mode its panel uses (range for
    time series and stats, instant for the table)."""
    problems = []
    count = 0
    for filling, chosen in fillings(stack).items():
        for name, board in DASHBOARDS.items():
            chosen_here = {k: v for k, v in chosen.items() if k in variables(board)}
            for panel, target in exprs(board):
                count += 1
                where = f"{name}: {panel['title']!r} ({target['refId']}, {filling})"
                try:
                    instant, ranged = run_target(stack, board, target, **chosen_here)
                except Exception as exc:  # noqa: BLE001 - collected and reported all at once
                    problems.append(f"{where}: {exc}")
                    continue
                unit = panel["fieldConfig"]["defaults"]["unit"]
                bad = [v for v in values(instant) + values(ranged) if not _unit_ok(unit, v)]
                if bad:
                    problems.append(f"{where}: values {bad[:5]} do not fit unit {unit}")
                if filling in ("All", "single", "multi"):
                    used = ranged if target.get("range", True) and not target.get("instant") else instant
                    if not used:
                        problems.append(f"{where} returned no data: {fill(target['expr'], board, **chosen_here)}")
    assert count >= 4 * 35
    assert not problems, "\n".join(problems)
    # The Delivery row's queries were among them, with data.
    delivery_row = [t for _, t in exprs(DASHBOARDS[OVERVIEW]) if any(m in t["expr"] for m in DELIVERY_METRICS)]
    assert len(delivery_row) == 5


def _one(result: list) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _instant(stack: dict, board_name: str, title: str, ref: str = "A", **chosen) -> list:
    return prom_query(stack["port"], _expr(board_name, title, ref, **chosen), at=stack["at"])["result"]


@pytest.mark.e2e
@pytest.mark.slow
def test_panel_values_are_what_the_traffic_made(stack) -> None:
    """Values where the demo's traffic determines them: the opening round sent one
    blocked_account and one missing_callback_url per region, so their stats count at least
    one per region (and exactly 0 where no traffic went: `or vector(0)`); shares lie between
    0 and 1 and errors exist; the one proxy is up; the generator itself abandoned requests."""
    port, at = stack["port"], stack["at"]
    blocked, callback = "blocked_account answers (last 15 min)", "Delivery reports without callback URL (last 15 min)"
    for title in (blocked, callback):
        assert _one(_instant(stack, OVERVIEW, title)) >= len(REGIONS), title
        for region in REGIONS:
            assert _one(_instant(stack, OVERVIEW, title, region=region)) >= 1, (title, region)
        assert _one(_instant(stack, OVERVIEW, title, region=NOWHERE)) == 0, title
    # The stat counts what the alerts count: each region's recorded 15-minute number.
    recorded = prom_query(port, 'region_code:sinch_sms_responses:increase15m{code="blocked_account"}', at=at)
    assert _one(_instant(stack, OVERVIEW, blocked)) == sum(float(r["value"][1]) for r in recorded["result"])

    firing = prom_query(port, 'count(ALERTS{alertname=~"SinchSms.+", alertstate="firing"})', at=at)["result"]
    assert _one(_instant(stack, OVERVIEW, "Firing Sinch alerts")) == _one(firing) >= 2 * len(REGIONS)

    assert _one(_instant(stack, OVERVIEW, "Answers/s")) > 0
    share = _one(_instant(stack, OVERVIEW, "Error share"))
    assert 0 < share < 1
    no_answer = _one(_instant(stack, OVERVIEW, "Requests without answer"))
    assert 0 <= no_answer < 1
    assert _one(_instant(stack, OVERVIEW, "Requests without answer", region=NOWHERE)) == 0
    by_class = {
        r["metric"]["status_class"]: float(r["value"][1])
        for r in _instant(stack, OVERVIEW, "Error share by status class")
    }
    assert set(by_class) == {"4xx", "5xx"} and 0 < by_class["4xx"] < 1 and 0 <= by_class["5xx"] < 1
    assert by_class["4xx"] + by_class["5xx"] == pytest.approx(share)

    latency = "Latency p50 / p95 / p99 by endpoint"
    p50, p95, p99 = (
        {r["metric"]["endpoint"]: float(r["value"][1]) for r in _instant(stack, OVERVIEW, latency, ref)}
        for ref in "ABC"
    )
    assert 0 < p50["batches"] <= p95["batches"] <= p99["batches"] < 10
    assert 0 < _one(_instant(stack, OVERVIEW, "p95 latency, all endpoints")) < 10

    aborts = _instant(stack, OVERVIEW, "Client aborts")
    assert {r["metric"]["region"] for r in aborts} == set(REGIONS) and all(float(r["value"][1]) > 0 for r in aborts)
    reasons = {r["metric"]["reason"] for r in _instant(stack, OVERVIEW, "Upstream errors by reason")}
    assert reasons and reasons <= set(alerts.UPSTREAM_REASONS)

    assert _one(_instant(stack, OVERVIEW, "Proxies up", "A")) == _one(_instant(stack, OVERVIEW, "Proxies up", "B")) == 1
    (version,) = _instant(stack, OVERVIEW, "Exporter versions")
    assert version["metric"]["version"] and float(version["value"][1]) == 1

    shares = [float(r["value"][1]) for r in _instant(stack, DRILLDOWN, "Error share by endpoint")]
    assert shares and all(0 <= s <= 1 for s in shares if not math.isnan(s)) and max(shares) > 0
    table = _instant(stack, DRILLDOWN, "Error answers in the time range")
    assert table and all(float(r["value"][1]) > 0 and r["metric"]["code"] for r in table)

    # The client aborts came from the generator's mix too, not only from the opening round.
    assert all(o["client abort"] == traffic.ABANDONED for o in stack["opening"].values())
    assert all(o["unknown path"] == "404" for o in stack["opening"].values())  # the API's answer to a typo
    assert all(g.tally.snapshot().get(traffic.ABANDONED, 0) > 0 for g in stack["generators"].values())


def _by(label: str, result: list) -> dict[str, float]:
    """An instant result's values by one label."""
    return {r["metric"][label]: float(r["value"][1]) for r in result}


def _receiver_answers(stack: dict) -> dict[str, int]:
    """The callbacks the receiver answered so far, by its status (its GET /stats)."""
    with urllib.request.urlopen(stack["receiver"] + "/stats", timeout=10) as response:
        stats = json.load(response)
    return {key: count for key, count in stats.items() if key.isdigit()}


@pytest.mark.e2e
@pytest.mark.slow
def test_delivery_row_values_are_what_the_callbacks_made(stack) -> None:
    """The Delivery row against what the callbacks of the demo's traffic made: the delivery
    rate is the simulator's delivered share (demo outcomes) and the status mix's; the mix
    sums to 1; the failure table lists the scenario's failed (status, code) pairs, each with
    the runbook section its link opens; the callbacks panel shows the receiver's answers
    (5 % 500), every answer counted once; delivery reports count only what it accepted; the
    listener whose receiver is down shows connect errors, and nothing else does."""
    port, at = stack["port"], stack["at"]
    outcomes = callbacks.DEMO_OUTCOMES
    final = {k: w for k, w in outcomes.items() if k[0].lower() in labels.FINAL_DELIVERY_STATUSES}
    expected = sum(w for (status, _), w in final.items() if status == "Delivered") / sum(final.values())
    rate = _one(_instant(stack, OVERVIEW, "Delivery rate"))
    # Within five standard deviations of a share of the final messages in the panel's window.
    statuses = "|".join(labels.FINAL_DELIVERY_STATUSES)
    window = f'sum(increase(sinch_sms_delivery_reports_total{{status=~"{statuses}"}}[{BUILTINS["__rate_interval"]}]))'
    messages = _one(prom_query(port, window, at=at)["result"])
    assert 0 < rate < 1 and rate == pytest.approx(expected, abs=5 * math.sqrt(expected * (1 - expected) / messages))
    mix = _by("status", _instant(stack, OVERVIEW, "Delivery status mix"))
    assert {"queued", "dispatched", "delivered", "failed"} <= set(mix) <= set(labels.DELIVERY_STATUSES)
    assert sum(mix.values()) == pytest.approx(1) and all(0 <= v < 1 for v in mix.values())
    assert rate == pytest.approx(mix["delivered"] / sum(mix.get(s, 0) for s in labels.FINAL_DELIVERY_STATUSES))

    rows = _instant(stack, OVERVIEW, "Top delivery failure codes")
    failed = {(s.lower(), str(c)) for s, c in outcomes if s.lower() in labels.FAILED_DELIVERY_STATUSES}
    pairs = [(r["metric"]["status"], r["metric"]["code"]) for r in rows]
    # Which failed pairs the short window holds depends on the random draw: only that each row
    # is one of the scenario's and at least one shows.
    assert 0 < len(rows) <= 10 and set(pairs) <= failed, (pairs, failed)
    counts = [float(r["value"][1]) for r in rows]
    assert all(c > 0 for c in counts) and counts == sorted(counts, reverse=True)
    for row in rows:
        code = row["metric"]["code"]
        assert row["metric"]["runbook_code"] == (code if code in delivery.CODE_INFO else NO_CODE_SHOWN), row

    # The receiver's answers, all of them: 200, and 500 for about demo.RECEIVER_FAIL_SHARE.
    answers = _by("status", _instant(stack, OVERVIEW, "Callbacks by receiver answer"))
    assert set(answers) == set(_receiver_answers(stack)) == {"200", "500"}
    assert answers["200"] > 0 and answers["500"] / sum(answers.values()) < 4 * demo.RECEIVER_FAIL_SHARE
    # Each answer counted once: the latest scraped totals lie between the receiver's counts
    # before and after (the proxy counts an answer after the receiver gave it).
    before = _receiver_answers(stack)

    def totals() -> dict[str, float] | None:
        scraped = _by("status", prom_query(port, "sum by (status) (sinch_sms_callbacks_total)")["result"])
        return scraped if all(scraped.get(k, 0) >= n for k, n in before.items()) else None

    scraped = wait_until(
        totals,
        timeout=20,
        what="the receiver's answers scraped",
    )
    after = _receiver_answers(stack)
    assert set(scraped) == set(after) and all(scraped[k] <= after[k] for k in after), (before, scraped, after)
    # Recipient reports (one message each) count only the callbacks the receiver accepted: equal
    # totals in a scrape (give or take a callback counted while that scrape was read).
    recipient = 'type=~"recipient_delivery_report_.*"'
    gap = (
        f"sum(sinch_sms_delivery_reports_total{{{recipient}}})"
        f' - sum(sinch_sms_callbacks_total{{{recipient}, status=~"2.."}})'
    )
    gaps = values(prom_range(port, gap, at - 10, at, 1)["result"])
    assert gaps and 0 in gaps and max(map(abs, gaps)) <= 3, gaps

    errors = _by("reason", _instant(stack, OVERVIEW, "Callback errors by reason"))
    assert set(errors) == set(labels.UPSTREAM_ERROR_REASONS)
    assert errors.pop(labels.REASON_CONNECT) > 0 and set(errors.values()) == {0}


@pytest.mark.e2e
@pytest.mark.slow
def test_data_links_resolve_to_runbook_sections_for_every_series(stack) -> None:
    """Each series (or table row) the error panels return completes its data links to a section
    that exists: the answers without a code (401, 404, 429, 5xx of the demo) included."""
    checked: set[str] = set()
    for name, board in DASHBOARDS.items():
        for panel in panels(board):
            templates = [link["url"] for link in links(panel) if LINK_VARIABLE.search(link["url"])]
            if not templates:
                continue
            for target in panel["targets"]:
                for series in prom_query(stack["port"], fill(target["expr"], board), at=stack["at"])["result"]:
                    for url in templates:
                        labels = series["metric"]
                        missing = [lb for _, lb in LINK_VARIABLE.findall(url) if not labels.get(lb)]
                        assert not missing, f"{name}: {panel['title']!r}: {labels} lacks {missing} for {url}"
                        resolved = LINK_VARIABLE.sub(lambda m, labels=labels: labels[m.group(2)], url)
                        anchor = resolved.partition("#")[2]
                        assert anchor in RUNBOOK_ANCHORS, f"{name}: {panel['title']!r}: {resolved} lands nowhere"
                        checked.add(anchor)
    # The demo's answers: every catalog code, no code, and the statuses of both.
    assert {f"code-{c}" for c in catalog.CODES} | {f"code-{NO_CODE_SHOWN}"} <= checked
    assert {"status-400", "status-401", "status-403", "status-404", "status-429", "status-503"} <= checked
    # The failure table's rows: the demo's failed outcomes (Failed, Expired, … with code 0: 4 %).
    assert "delivery-code-0" in checked


@pytest.mark.e2e
@pytest.mark.slow
def test_variables_filter(stack) -> None:
    overview = DASHBOARDS[OVERVIEW]
    per_region = next(p for p in panels(overview) if p["title"] == "Answers per region")
    both = prom_query(stack["port"], fill(per_region["targets"][0]["expr"], overview))["result"]
    assert {r["metric"]["region"] for r in both} == set(REGIONS)
    only_eu = prom_query(stack["port"], fill(per_region["targets"][0]["expr"], overview, region="eu"))["result"]
    assert {r["metric"]["region"] for r in only_eu} == {"eu"}
    drill = DASHBOARDS[DRILLDOWN]
    by_code = next(p for p in panels(drill) if p["title"] == "Error answers by endpoint and code")
    blocked = prom_query(stack["port"], fill(by_code["targets"][0]["expr"], drill, code="blocked_account"))["result"]
    assert blocked and {r["metric"]["code"] for r in blocked} == {"blocked_account"}
    # A single endpoint whose name has regex metacharacters selects exactly that endpoint.
    by_status = next(p for p in panels(drill) if p["title"] == "Answers by endpoint and status")
    one = prom_query(stack["port"], fill(by_status["targets"][0]["expr"], drill, endpoint="batches/{batch_id}"))
    assert one["result"] and {r["metric"]["endpoint"] for r in one["result"]} == {"batches/{batch_id}"}
    two = prom_query(
        stack["port"], fill(by_status["targets"][0]["expr"], drill, endpoint=["batches", "batches/{batch_id}"])
    )
    assert {r["metric"]["endpoint"] for r in two["result"]} == {"batches", "batches/{batch_id}"}


def _label_values(port: int, definition: str, board: dict) -> list[str]:
    """What Grafana's label_values(selector, label) asks the Prometheus API."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", fill(definition, board))
    assert match, definition
    selector, label = match.groups()
    query = urllib.parse.urlencode({"match[]": selector})
    url = f"http://127.0.0.1:{port}/api/v1/label/{label}/values?{query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


@pytest.mark.e2e
@pytest.mark.slow
def test_variable_queries_list_what_the_traffic_produced(stack) -> None:
    expected = {
        "region": set(REGIONS),
        "endpoint": {"batches", "batches/{batch_id}", "batches/dry_run", "delivery_reports", "groups", "inbounds"},
        "method": {"POST", "GET"},
        "code": set(catalog.CODES),
        "instance": {stack["instance"]},
    }
    for name, board in DASHBOARDS.items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            values_ = set(_label_values(stack["port"], var["definition"], board))
            assert expected[var["name"]] <= values_, (name, var["name"], values_)


@pytest.mark.e2e
@pytest.mark.slow
def test_every_metric_named_by_a_dashboard_or_rule_is_exposed(stack) -> None:
    exposed = {name for name, _ in scrape(stack["proxy"].ports["metrics"])}
    names = set()
    for expr in all_dashboard_exprs() + rule_exprs():
        raw = RECORDED_NAME.sub(" ", expr)  # recorded names contain metric names; checked apart
        names |= set(re.findall(r"\b(?:sinch_sms_[a-z0-9_]+|process_[a-z_]+)\b", raw))
    assert names >= DELIVERY_METRICS
    assert names - exposed == set()
    # And the dashboards and rules between them look at every metric the proxy exposes.
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exposed if n.startswith("sinch_sms_")}
    for family in families:
        assert any(family in expr for expr in all_dashboard_exprs() + rule_exprs()), f"{family} is on no dashboard"


@pytest.mark.e2e
@pytest.mark.slow
def test_rules_evaluate_cleanly_and_recorded_series_carry_their_level(stack) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack['port']}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    seen = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(seen) >= RECORDS | set(alerts.ALERTS_BY_NAME)
    for name, rule in seen.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), (name, rule.get("lastError"))
    for record in RECORDS:
        result = prom_query(stack["port"], record)["result"]
        assert result, f"{record} recorded nothing"
        # The level names the labels kept (over all series: an empty label, code="", is absent).
        level = record.split(":")[0]
        labels = {k for series in result for k in series["metric"]} - {"__name__", "quantile"}
        assert any("_".join(p) == level for p in itertools.permutations(labels)), (record, labels)


@pytest.mark.e2e
@pytest.mark.slow
def test_real_alerts_fire_for_the_first_blocked_account_answer_and_not_for_the_exporter(stack) -> None:
    """The proxy started fresh: its blocked_account series were born at 1 (no increase() to see),
    and the real Prometheus still fires the alert, once per region, without instance."""
    firing = prom_query(stack["port"], 'ALERTS{alertstate="firing"}')["result"]
    by_name: dict[str, list[dict]] = {}
    for alert in firing:
        by_name.setdefault(alert["metric"]["alertname"], []).append(alert["metric"])
    blocked = by_name[alerts.ALERT_ACCOUNT_BLOCKED]
    assert sorted(a["region"] for a in blocked) == sorted(REGIONS)
    assert all("instance" not in a and a["severity"] == "critical" for a in blocked)
    assert sorted(a["region"] for a in by_name[alerts.ALERT_MISSING_CALLBACK_URL]) == sorted(REGIONS)
    # The scrape job follows the convention, so the exporter is not reported down.
    assert alerts.ALERT_EXPORTER_DOWN not in by_name
    up = prom_query(stack["port"], f'up{{job="{JOB}"}}')["result"]
    assert [u["value"][1] for u in up] == ["1"]
