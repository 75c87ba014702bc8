"""Grafana dashboards without a Grafana: their structure by Grafana's conventions, and every panel
query, template variables filled in, run against a real Prometheus that scrapes the real proxy
(with the real rules loaded) while the simulator answers mixed traffic."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from ruamel.yaml import YAML

from helpers import (
    PLAN,
    REPO,
    free_port,
    http,
    prom_query,
    running,
    scrape,
    start_prometheus,
    start_proxy,
    start_simulator,
    system_tool,
    wait_until,
)
from sinch_sms_exporter import catalog, runbook, simulator

DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted((REPO / "dashboards").glob("*.json"))}
#: File → uid. uids are how links, bookmarks and provisioning find a dashboard: never change them.
UIDS = {"sinch-sms-overview.json": "sinch-sms-overview", "sinch-sms-drilldown.json": "sinch-sms-drilldown"}
UNITS = {"reqps", "s", "percentunit", "short", "bytes"}
JOB = "sinch-sms-exporter"
SCRAPE_INTERVAL = "1s"
#: What Grafana puts in place of its built-in variables, for this test's 1 s scrape interval
#: ($__rate_interval is at least four scrape intervals; a minute is safely more).
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
RECORDING = YAML(typ="safe").load((REPO / "prometheus" / "recording.yml").read_text())
RECORDS = {r["record"] for g in RECORDING["groups"] for r in g["rules"]}
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


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


def fill(expr: str, board: dict, **chosen: str) -> str:
    """The query Grafana sends: template variables replaced (All → the variable's allValue)."""
    defined = variables(board)

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in defined, f"undefined template variable ${name} in {expr}"
        if name in chosen:
            return chosen[name]
        var = defined[name]
        if var["type"] == "textbox":
            return var["query"]
        return var.get("allValue") or ".*"

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def links(panel: dict) -> list[dict]:
    return panel.get("links", []) + panel["fieldConfig"]["defaults"].get("links", [])


# --- structure ------------------------------------------------------------------------------------


def test_the_dashboards_are_there_with_stable_unique_uids() -> None:
    assert {name: board["uid"] for name, board in DASHBOARDS.items()} == UIDS
    for board in DASHBOARDS.values():
        assert board["id"] is None, "a fixed id breaks import into another Grafana"
        assert board["schemaVersion"] >= 39
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
    overview = DASHBOARDS["sinch-sms-overview.json"]
    latency = next(p for p in panels(overview) if p["title"].startswith("Latency"))
    assert "quantile_rate5m" in latency["targets"][0]["expr"]


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
                assert any(u.startswith(runbook.RUNBOOK_URL) for u in urls), f"{name}: {panel['title']!r}"


def test_every_runbook_link_lands_on_a_section() -> None:
    existing = set(re.findall(r'<a id="([^"]+)"></a>', (REPO / "docs" / "runbook.md").read_text()))
    existing |= {"alerts", "http-statuses", "error-codes", "upstream-errors"}  # the page's ## headings
    prefixes = {a.split("-")[0] + "-" for a in existing if "-" in a}
    found = 0
    for board in DASHBOARDS.values():
        for link in [*board["links"], *(link for p in panels(board) for link in links(p))]:
            url = link.get("url", "")
            if not url.startswith(runbook.RUNBOOK_URL):
                continue
            found += 1
            anchor = url.partition("#")[2]
            if "${" in anchor:  # a data link: the label completes the anchor
                assert anchor.split("$")[0] in prefixes, url
            else:
                assert anchor == "" or anchor in existing, f"{url} points at no section"
    assert found >= 10


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


# --- against a real Prometheus scraping the real proxy --------------------------------------------


class Traffic(threading.Thread):
    """Mixed traffic through both listeners (us, eu) until stopped: every catalog answer,
    upstream faults (drop, reset) and a client that gives up before a slow answer."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.stopped = threading.Event()
        self.sent = 0

    def send(self, port: int, answer: str, method: str = "POST", path: str = "/batches", timeout: float = 5.0):
        body = b'{"from": "12345", "to": ["+15550100"], "body": "hi"}' if method == "POST" else None
        headers = {"X-Sinch-Sim": answer, "Content-Type": "application/json"}
        with contextlib.suppress(OSError):  # the client-abort request times out on purpose
            http(method, f"http://127.0.0.1:{port}{PLAN}{path}", body, headers, timeout=timeout)
        self.sent += 1

    def run(self) -> None:
        while not self.stopped.is_set():
            for answer in simulator.CATALOG_ANSWERS:
                self.send(self.ports["us"], answer)
            self.send(self.ports["us"], "ok", "GET", "/batches/01FC66621XXXXX119Z8PMV1QPQ")
            self.send(self.ports["us"], "404", "GET", "/batches/01FC66621XXXXX119Z8PMV1QPQ/delivery_report")
            for answer in ("ok", "ok", "429", "403:unknown_group", "drop", "reset"):
                self.send(self.ports["eu"], answer)
            self.send(self.ports["us"], "slow:1.5", timeout=0.2)  # the service gives up: a client abort
            self.stopped.wait(0.3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    system_tool("prometheus")
    tmp = tmp_path_factory.mktemp("dashboards")
    # Two upstreams (the region comes from the upstream's address): two simulators, one proxy
    # with a listener for each, as a sidecar serving two Sinch regions would run.
    with running(start_simulator(tmp)) as sim_us, running(start_simulator(tmp)) as sim_eu:
        us, eu = (f"http://127.0.0.1:{sim.ports['http']}" for sim in (sim_us, sim_eu))
        eu_port = free_port()
        proxy = start_proxy(tmp, us, "--region", "us", "--upstream", f"{eu}@{eu_port}", "--region", "eu", region=None)
        with running(proxy):
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
            traffic = Traffic({"us": proxy.ports["listen"], "eu": eu_port})
            traffic.start()
            try:
                with running(start_prometheus(tmp, config, rule_files=rules)) as prom:
                    port = prom.ports["http"]
                    # Ready when the recording rules and the blocked_account alert have seen the traffic.
                    wait_until(
                        lambda: (
                            prom_query(port, "region_reason:sinch_sms_upstream_errors:rate5m > 0")["result"]
                            and prom_query(port, "region:sinch_sms_client_aborts:rate5m > 0")["result"]
                            and prom_query(port, 'ALERTS{alertname="SinchSmsAccountBlocked",alertstate="firing"}')[
                                "result"
                            ]
                        ),
                        timeout=45,
                        what="rules and alerts fed by the traffic",
                    )
                    yield {"port": port, "proxy": proxy, "traffic": traffic}
            finally:
                traffic.stopped.set()
                traffic.join(10)


@pytest.mark.e2e
@pytest.mark.slow
def test_every_panel_query_runs_and_returns_data(stack) -> None:
    problems = []
    count = 0
    for name, board in DASHBOARDS.items():
        for panel, target in exprs(board):
            query = fill(target["expr"], board)
            count += 1
            try:
                result = prom_query(stack["port"], query)["result"]
            except Exception as exc:  # noqa: BLE001 - collected and reported all at once
                problems.append(f"{name}: {panel['title']!r}: {exc}")
                continue
            if not result:
                problems.append(f"{name}: {panel['title']!r} ({target['refId']}) returned no data: {query}")
    assert count >= 30
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
@pytest.mark.slow
def test_variables_filter(stack) -> None:
    overview = DASHBOARDS["sinch-sms-overview.json"]
    per_region = next(p for p in panels(overview) if p["title"] == "Answers per region")
    both = prom_query(stack["port"], fill(per_region["targets"][0]["expr"], overview))["result"]
    assert {r["metric"]["region"] for r in both} == {"us", "eu"}
    only_eu = prom_query(stack["port"], fill(per_region["targets"][0]["expr"], overview, region="eu"))["result"]
    assert {r["metric"]["region"] for r in only_eu} == {"eu"}
    drill = DASHBOARDS["sinch-sms-drilldown.json"]
    by_code = next(p for p in panels(drill) if p["title"] == "Error answers by endpoint and code")
    blocked = prom_query(stack["port"], fill(by_code["targets"][0]["expr"], drill, code="blocked_account"))["result"]
    assert blocked and {r["metric"]["code"] for r in blocked} == {"blocked_account"}


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
        "region": {"us", "eu"},
        "endpoint": {"batches", "batches/{batch_id}"},
        "method": {"POST", "GET"},
        "code": {"blocked_account", "missing_callback_url", "syntax_invalid_json"},
        "instance": {f"127.0.0.1:{stack['proxy'].ports['metrics']}"},
    }
    for name, board in DASHBOARDS.items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            values = set(_label_values(stack["port"], var["definition"], board))
            assert expected[var["name"]] <= values, (name, var["name"], values)


@pytest.mark.e2e
@pytest.mark.slow
def test_every_metric_named_by_a_dashboard_or_rule_is_exposed(stack) -> None:
    exposed = {name for name, _ in scrape(stack["proxy"].ports["metrics"])}
    names = set()
    for expr in all_dashboard_exprs() + rule_exprs():
        raw = RECORDED_NAME.sub(" ", expr)  # recorded names contain metric names; checked apart
        names |= set(re.findall(r"\b(?:sinch_sms_[a-z0-9_]+|process_[a-z_]+)\b", raw))
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
    assert set(seen) >= RECORDS | set(runbook.ALERTS_BY_NAME)
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
    """The proxy started fresh: its blocked_account series was born at 1 (no increase() to see),
    and the real Prometheus still fires the alert, with region and without instance."""
    firing = prom_query(stack["port"], 'ALERTS{alertstate="firing"}')["result"]
    by_name: dict[str, list[dict]] = {}
    for alert in firing:
        by_name.setdefault(alert["metric"]["alertname"], []).append(alert["metric"])
    blocked = by_name[catalog.ALERT_ACCOUNT_BLOCKED]
    assert [a["region"] for a in blocked] == ["us"] and "instance" not in blocked[0]
    assert blocked[0]["severity"] == "critical"
    assert [a["region"] for a in by_name[catalog.ALERT_MISSING_CALLBACK_URL]] == ["us"]
    # The scrape job follows the convention, so the exporter is not reported down.
    assert catalog.ALERT_EXPORTER_DOWN not in by_name
    up = prom_query(stack["port"], f'up{{job="{JOB}"}}')["result"]
    assert [u["value"][1] for u in up] == ["1"]
