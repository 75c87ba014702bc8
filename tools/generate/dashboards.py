"""dashboards/*.json, built with Grafana's grafana-foundation-sdk (schema 41, Grafana 11.6+).

Two dashboards: the overview (fleet-wide, from the recording rules of prometheus/recording.yml)
and the drill-down (raw series, by endpoint, method, status, code and proxy). Every panel
queries the `${datasource}` variable (import works in any Grafana), and every runbook link is
built from tools.generate.RUNBOOK_URL. tests/monitoring/test_dashboards.py runs every query against a real
Prometheus that scrapes the real proxy.

The SDK's models lack three things Grafana's own export has; `_exported` adds them after
encoding: `id: null` (a fixed id breaks import), `__requires` (Grafana's import screen lists
it), and a query variable's `definition` (the variables list shows it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

from sinch_sms_exporter.contract import alerts, delivery, labels
from tools.generate import runbook_link

DIRECTORY = "dashboards"
OVERVIEW, DRILLDOWN = "sinch-sms-overview.json", "sinch-sms-drilldown.json"
#: The Grafana version whose schema (41) the dashboards are written in.
GRAFANA_VERSION = "11.6.0"
TAG = "sinch-sms"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The overview's filters: by region (recorded series), by proxy (its own series).
REGION = 'region=~"$region"'
PROXY = 'job="$job", instance=~"$instance"'
#: Answers per second over the selected regions.
ANSWERS = f"sum(region:sinch_sms_responses:rate5m{{{REGION}}})"
BUCKETS = f'region_endpoint_le:sinch_sms_request_duration_seconds_bucket:rate5m{{{REGION}, endpoint=~"$endpoint"}}'
ERRORS = 'status=~"4..|5.."'
RESPONSES = "sinch_sms_responses_total"
CODE = ', code=~"$code"'
#: The drill-down's filter on the raw series: every variable but `code` (not all panels have one).
SEL = 'region=~"$region", endpoint=~"$endpoint", method=~"$method", instance=~"$instance", job="$job"'
DELIVERED = "delivered"
#: Runbook section of a delivery code: `delivery-code-<code>`.
DELIVERY_CODE_ANCHOR = "delivery-code-"
#: The failure table's hidden column naming the code's runbook section: the code itself where
#: the runbook documents it, else NO_CODE_SHOWN (whose section covers no code, `other` and
#: operators' codes outside Sinch's list, which have no section of their own).
RUNBOOK_CODE = "runbook_code"

Grid = tuple[int, int, int, int]  # x, y, w, h


def _show_no_code(expr: str) -> str:
    """`code=""` relabelled to labels.NO_CODE_SHOWN: Prometheus drops an empty label, and a data
    link cannot complete `#code-…` from a label the series lacks."""
    return f'label_replace({expr}, "code", "{labels.NO_CODE_SHOWN}", "code", "")'


def _runbook_code(expr: str) -> str:
    """RUNBOOK_CODE added to each delivery code's series: the code where the runbook has a
    `delivery-code-<code>` section (contract/delivery.py), else NO_CODE_SHOWN."""
    documented = "|".join(delivery.CODE_INFO)
    default = f'label_replace({expr}, "{RUNBOOK_CODE}", "{labels.NO_CODE_SHOWN}", "", "")'
    return f'label_replace({default}, "{RUNBOOK_CODE}", "$1", "code", "({documented})")'


def _query(expr: str, legend: str, ref: str = "A", *, instant_table: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().ref_id(ref).datasource(DATASOURCE).editor_mode(QueryEditorMode.CODE).expr(expr)
    query = query.legend_format(legend)
    return query.instant().format(PromQueryFormat.TABLE) if instant_table else query.range()


def _rate(metric: str, pre: str = "", post: str = "", *, fn: str = "rate", window: str = "$__rate_interval") -> str:
    """`rate(metric{…}[$__rate_interval])` of a raw series under the drill-down's filter."""
    return f"{fn}({metric}{{{pre}{SEL}{post}}}[{window}])"


def _quantiles(by: str, buckets: str, legend: str) -> list[prometheus.Dataquery]:
    """p50, p95, p99 (refs A, B, C) of buckets summed over the selection: several regions give
    the quantile of all their answers, never an aggregate of per-region quantiles."""
    return [
        _query(f"histogram_quantile({q}, sum by (le, {by}) ({buckets}))", f"{legend} p{round(q * 100)}", ref)
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def _last_15_minutes(code: str) -> str:
    """Answers with `code` in the last 15 minutes, as the alerts count them (0, not no data)."""
    return f'sum(region_code:sinch_sms_responses:increase15m{{code="{code}", {REGION}}}) or vector(0)'


def _link(title: str, anchor: str = "") -> builders.DashboardLink:
    """A link into the runbook (a panel link, or a data link when the anchor names a field)."""
    return builders.DashboardLink(title).url(runbook_link(anchor)).target_blank(True)


def _grid(grid: Grid) -> model.GridPos:
    x, y, w, h = grid
    return model.GridPos(x=x, y=y, w=w, h=h)


def _thresholds(steps: Sequence[tuple[str, float | None]]) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(color=color, value=value) for color, value in steps])
    )


def _timeseries(
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    stacked: bool = False,
    calcs: Sequence[str] = ("mean", "max"),
    links: Sequence[builders.DashboardLink] = (),
    data_links: Sequence[builders.DashboardLink] = (),
) -> timeseries.Panel:
    """Lines per series; stacked (and more filled) where the series add up to a whole."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(_grid(grid))
        .unit(unit)
        .targets(list(targets))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(20 if stacked else 8)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common_builders.StackingConfig()
            .mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
            .group("A")
        )
        .axis_soft_min(0)
        .color_scheme(builders.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(_thresholds([("green", None)]))
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(list(calcs))
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
        .links(list(links))
        .data_links(list(data_links))
    )
    return panel


def _stat(
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    steps: Sequence[tuple[str, float | None]],
    alarm: bool = False,
    sparkline: bool = True,
    decimals: int | None = None,
    links: Sequence[builders.DashboardLink] = (),
) -> stat.Panel:
    """One number. An alarm colours its whole background at the first step (nothing to trend)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(_grid(grid))
        .unit(unit)
        .targets(list(targets))
        .color_scheme(builders.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(_thresholds(steps))
        .mappings([])
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND if alarm else common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA if sparkline and not alarm else common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .orientation(common.VizOrientation.AUTO)
        .links(list(links))
    )
    return panel.decimals(decimals) if decimals is not None else panel


def _table(
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    hidden: Sequence[str],
    link_only: Sequence[str] = (),
    links: Sequence[builders.DashboardLink] = (),
    data_links: Sequence[builders.DashboardLink] = (),
) -> table.Panel:
    """One row per series of an instant query (format: table); `hidden` columns left out of the
    frame, `link_only` ones kept in it but not shown ("Hide in table"): data links can read them."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(_grid(grid))
        .unit(unit)
        .targets(list(targets))
        .thresholds(_thresholds([("green", None)]))
        .align(common.FieldTextAlignment.AUTO)
        .filterable(True)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .footer(common_builders.TableFooterOptions().show(False))
        .with_transformation(
            model.DataTransformerConfig(id_val="organize", options={"excludeByName": dict.fromkeys(hidden, True)})
        )
        .links(list(links))
        .data_links(list(data_links))
    )
    for name in link_only:
        panel = panel.override_by_name(name, [model.DynamicConfigValue(id_val="custom.hidden", value=True)])
    return panel


def _row(title: str, y: int) -> builders.Row:
    return builders.Row(title).grid_pos(model.GridPos(x=0, y=y, w=24, h=1))


# --- variables ---------------------------------------------------------------------------------


def _query_variable(name: str, label: str, query: str, description: str) -> builders.QueryVariable:
    """A multi-value label_values() variable, All by default (allValue `.*`: no regex over every value)."""
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1})
        .description(description)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .hide(model.VariableHide.DONT_HIDE)
        .options([])
    )


def _variables(*extra: builders.QueryVariable) -> list[Any]:
    """datasource, job, region, endpoint, then the board's own, then instance."""
    datasource = (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(model.VariableOption())
        .hide(model.VariableHide.DONT_HIDE)
        .include_all(False)
        .multi(False)
        .regex("")
    )
    # The SDK's DatasourceVariable builder has no setter for these two fields of its model.
    datasource._internal.options = []
    datasource._internal.refresh = model.VariableRefresh.ON_DASHBOARD_LOAD
    job = (
        builders.TextBoxVariable("job")
        .label("Scrape job")
        .default_value(alerts.EXPORTER_JOB)
        .current(model.VariableOption(selected=False, text=alerts.EXPORTER_JOB, value=alerts.EXPORTER_JOB))
        .description(f"The scrape job of the proxies (the alert rules expect {alerts.EXPORTER_JOB}).")
        .hide(model.VariableHide.DONT_HIDE)
        .options([model.VariableOption(selected=True, text=alerts.EXPORTER_JOB, value=alerts.EXPORTER_JOB)])
    )
    region = _query_variable(
        "region",
        "Region",
        "label_values(sinch_sms_responses_total, region)",
        f"Sinch region ({', '.join(sorted(labels.KNOWN_REGIONS, key=_REGION_ORDER.index))}) of the upstream.",
    )
    endpoint = _query_variable(
        "endpoint",
        "Endpoint",
        'label_values(sinch_sms_responses_total{region=~"$region"}, endpoint)',
        "Endpoint template of the SMS API (batches, batches/{batch_id}, \u2026).",
    )
    instance = _query_variable(
        "instance",
        "Instance",
        'label_values(up{job="$job"}, instance)',
        "One proxy (sidecar) as Prometheus scrapes it.",
    )
    return [datasource, job, region, endpoint, *extra, instance]


#: The order the region variable's description lists them in.
_REGION_ORDER = ("us", "eu", "au", "br", "ca")


def _dashboard(uid: str, title: str, description: str, variables: list[Any], panels: list[Any]) -> builders.Dashboard:
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("")
        .week_start("")
        .fiscal_year_start_month(0)
        .live_now(False)
        .version(1)
        .annotation(
            builders.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .links(
            [
                builders.DashboardLink("Sinch SMS dashboards")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(False)
                .include_vars(True)
                .keep_time(True)
                .icon("external link")
                .target_blank(False)
                .tooltip("")
                .url(""),
                builders.DashboardLink("Runbook")
                .type(model.DashboardLinkType.LINK)
                .url(runbook_link())
                .icon("doc")
                .target_blank(True)
                .tooltip("What each status and code means and what to do")
                .as_dropdown(False)
                .include_vars(False)
                .keep_time(False)
                .tags([]),
            ]
        )
        .timepicker(builders.TimePicker())
        .variables(variables)
    )
    for number, panel in enumerate(panels, start=1):
        panel.id(number)
        if isinstance(panel, builders.Row):
            board.with_row(panel)
        else:
            board.with_panel(panel)
    return board


def _exported(board: builders.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana exports it "for sharing externally" (see the module docstring)."""
    doc: dict[str, Any] = json.loads(JSONEncoder().encode(board.build()))
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            variable["definition"] = variable["query"]["query"]
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ]
    return {"__requires": requires, "id": None, **doc}


# --- the overview ------------------------------------------------------------------------------


def overview() -> builders.Dashboard:
    """Fleet-wide: the recording rules of prometheus/recording.yml, by region."""
    panels = [
        _stat(
            "blocked_account answers (last 15 min)",
            (
                "Answers `403 blocked_account` in the last 15 minutes, all proxies of the selected regions "
                "(recording rule region_code:sinch_sms_responses:increase15m, which also counts a proxy's "
                "very first answer). Anything above 0: the Sinch account is blocked and no message goes "
                "out; SinchSmsAccountBlocked pages. Open the runbook."
            ),
            (0, 0, 8, 6),
            "short",
            [_query(_last_15_minutes("blocked_account"), "blocked_account")],
            links=[_link("Runbook: blocked_account", "code-blocked_account")],
            steps=[("green", None), ("red", 1)],
            alarm=True,
            decimals=0,
        ),
        _stat(
            "Firing Sinch alerts",
            (
                "Sinch SMS alerts firing now (ALERTS series of this Prometheus; needs prometheus/alerts.yml "
                "loaded). Details in Alerting or Alertmanager; what to do in the runbook."
            ),
            (8, 0, 4, 6),
            "short",
            [_query('count(ALERTS{alertname=~"SinchSms.+", alertstate="firing"}) or vector(0)', "firing")],
            links=[_link("Runbook: alerts", "alerts")],
            steps=[("green", None), ("orange", 1)],
            alarm=True,
            decimals=0,
        ),
        _stat(
            "Answers/s",
            "Answers from the Sinch SMS API per second, all statuses (5-minute rate).",
            (12, 0, 4, 6),
            "reqps",
            [_query(ANSWERS, "answers/s")],
            steps=[("green", None)],
        ),
        _stat(
            "Error share",
            (
                "Share of 4xx and 5xx among the answers (5-minute rate): 0 when there is traffic and "
                "no error, no data only without traffic."
            ),
            (16, 0, 4, 6),
            "percentunit",
            [
                _query(
                    f'(sum(region_status_class:sinch_sms_responses:rate5m{{status_class=~"4xx|5xx", {REGION}}}) '
                    f"or 0 * {ANSWERS}) / {ANSWERS}",
                    "errors",
                )
            ],
            links=[_link("Runbook: HTTP statuses", "http-statuses")],
            steps=[("green", None), ("orange", 0.05), ("red", 0.2)],
        ),
        _stat(
            "Requests without answer",
            (
                "Share of requests that got no answer from Sinch at all (refused, DNS, TLS, timeout, "
                "reset): the service got a 502 from the proxy."
            ),
            (20, 0, 4, 6),
            "percentunit",
            [
                _query(
                    f"max(region:sinch_sms_upstream_errors_per_request:ratio_rate5m{{{REGION}}}) or vector(0)",
                    "no answer",
                )
            ],
            links=[_link("Runbook: upstream errors", "alert-sinchsmsupstreamunreachable")],
            steps=[("green", None), ("orange", 0.01), ("red", 0.05)],
        ),
        _row("Traffic and answers", y=6),
        _timeseries(
            "Answers by status class",
            "Answers per second by status class (2xx success, 4xx refused requests, 5xx Sinch errors), stacked.",
            (0, 7, 12, 8),
            "reqps",
            [
                _query(
                    f"sum by (status_class) (region_status_class:sinch_sms_responses:rate5m{{{REGION}}})",
                    "{{status_class}}",
                )
            ],
            stacked=True,
        ),
        _timeseries(
            "Error share by status class",
            (
                "Share of 4xx and of 5xx among all answers (a class without errors shows 0 while there "
                "is traffic). SinchSmsServerErrorSpike pages above 5 % of 5xx sustained (above half "
                "where traffic is under 10 answers per 5 minutes); SinchSmsClientErrorBurst warns when "
                "one 4xx code passes 10 %."
            ),
            (12, 7, 12, 8),
            "percentunit",
            [
                _query(
                    "(sum by (status_class) "
                    f'(region_status_class:sinch_sms_responses:rate5m{{status_class=~"4xx|5xx", {REGION}}})'
                    + "".join(
                        f' or label_replace(0 * {ANSWERS}, "status_class", "{c}", "", "")' for c in ("4xx", "5xx")
                    )
                    + f") / ignoring (status_class) group_left {ANSWERS}",
                    "{{status_class}}",
                )
            ],
            links=[
                _link("Runbook: SinchSmsServerErrorSpike", "alert-sinchsmsservererrorspike"),
                _link("Runbook: SinchSmsClientErrorBurst", "alert-sinchsmsclienterrorburst"),
            ],
        ),
        _timeseries(
            "Error answers by code",
            (
                "4xx and 5xx answers per second by status and JSON code (`none`: the answer carried "
                "no code). Click a series for its runbook section."
            ),
            (0, 15, 12, 8),
            "reqps",
            [
                _query(
                    _show_no_code(
                        f"sum by (status, code) (region_status_code:sinch_sms_responses:rate5m{{{ERRORS}, {REGION}}})"
                    ),
                    "{{status}} {{code}}",
                )
            ],
            links=[_link("Runbook: error codes", "error-codes")],
            data_links=[
                _link("Runbook: code ${__field.labels.code}", "code-${__field.labels.code}"),
                _link("Runbook: status ${__field.labels.status}", "status-${__field.labels.status}"),
            ],
            stacked=True,
        ),
        _timeseries(
            "Answers per region",
            "Answers per second per Sinch region, all statuses.",
            (12, 15, 12, 8),
            "reqps",
            [_query(f"sum by (region) (region:sinch_sms_responses:rate5m{{{REGION}}})", "{{region}}")],
        ),
        _timeseries(
            "Answers by endpoint",
            "Answers per second per endpoint template and status class.",
            (0, 23, 12, 8),
            "reqps",
            [
                _query(
                    "sum by (endpoint, status_class) "
                    f'(region_endpoint_status_class:sinch_sms_responses:rate5m{{{REGION}, endpoint=~"$endpoint"}})',
                    "{{endpoint}} {{status_class}}",
                )
            ],
        ),
        _stat(
            "Delivery reports without callback URL (last 15 min)",
            (
                "Answers `403 missing_callback_url` in the last 15 minutes: a batch asked for delivery "
                "reports but no callback URL is set, so the reports are lost (SinchSmsMissingCallbackUrl)."
            ),
            (12, 23, 12, 8),
            "short",
            [_query(_last_15_minutes("missing_callback_url"), "missing_callback_url")],
            links=[_link("Runbook: missing_callback_url", "code-missing_callback_url")],
            steps=[("green", None), ("orange", 1)],
            alarm=True,
            decimals=0,
        ),
        _row("Latency", y=31),
        _timeseries(
            "Latency p50 / p95 / p99 by endpoint",
            (
                "Time from the request reaching the proxy to the end of Sinch's answer, quantiles over "
                "5 minutes per endpoint, computed from the histogram buckets summed over the selected "
                "regions (recording rule region_endpoint_le:sinch_sms_request_duration_seconds_bucket:rate5m), "
                "so several regions together give the quantile of all their answers."
            ),
            (0, 32, 18, 9),
            "s",
            _quantiles("endpoint", BUCKETS, "{{endpoint}}"),
            calcs=["mean", "max", "lastNotNull"],
        ),
        _stat(
            "p95 latency, all endpoints",
            "95th percentile of the answer time over all selected endpoints and regions (5 minutes).",
            (18, 32, 6, 9),
            "s",
            [_query(f"histogram_quantile(0.95, sum by (le) ({BUCKETS}))", "p95")],
            steps=[("green", None), ("orange", 1), ("red", 5)],
        ),
        _row("Upstream: requests without an answer", y=41),
        _timeseries(
            "Upstream errors by reason",
            (
                "Requests per second that got no answer from Sinch, by reason: connect/dns/tls point "
                "at this side (egress, resolver, CA), timeout/closed more often at Sinch. The service "
                "got a 502."
            ),
            (0, 42, 12, 8),
            "reqps",
            [_query(f"sum by (reason) (region_reason:sinch_sms_upstream_errors:rate5m{{{REGION}}})", "{{reason}}")],
            links=[
                _link("Runbook: SinchSmsUpstreamUnreachable", "alert-sinchsmsupstreamunreachable"),
                _link("Runbook: upstream errors", "upstream-errors"),
            ],
            data_links=[_link("Runbook: reason ${__field.labels.reason}", "upstream-${__field.labels.reason}")],
            stacked=True,
        ),
        _timeseries(
            "Client aborts",
            (
                "Requests per second the services abandoned (disconnected) before Sinch answered: usually "
                "a client timeout shorter than Sinch's answer time."
            ),
            (12, 42, 12, 8),
            "reqps",
            [_query(f"sum by (region) (region:sinch_sms_client_aborts:rate5m{{{REGION}}})", "{{region}}")],
        ),
        _row("Exporter health", y=50),
        _stat(
            "Proxies up",
            (
                "Scrape targets of the job that answer (up == 1), out of all targets of the job. A target "
                "down: SinchSmsExporterDown."
            ),
            (0, 51, 4, 7),
            "short",
            [
                _query(f"sum(up{{{PROXY}}})", "up"),
                _query(f"count(up{{{PROXY}}})", "targets", ref="B"),
            ],
            links=[_link("Runbook: SinchSmsExporterDown", "alert-sinchsmsexporterdown")],
            steps=[("green", None)],
            sparkline=False,
            decimals=0,
        ),
        _table(
            "Exporter versions",
            "One row per proxy: sinch-sms-exporter, mitmproxy and Python versions (sinch_sms_exporter_build_info).",
            (4, 51, 10, 7),
            "short",
            [_query(f"sinch_sms_exporter_build_info{{{PROXY}}}", "__auto", instant_table=True)],
            hidden=["Time", "Value", "__name__", "job"],
        ),
        _timeseries(
            "Label overflow",
            (
                "Label values replaced by `other` because their label reached its cap (--code-cap for "
                "codes): above 0, raise the cap or look for a client sending odd codes."
            ),
            (14, 51, 10, 7),
            "short",
            [
                _query(
                    f"sum by (label) (increase(sinch_sms_exporter_label_overflow_total{{{PROXY}}}[$__rate_interval]))",
                    "{{label}}",
                )
            ],
        ),
        _timeseries(
            "Uptime",
            (
                "Time since each proxy process started; a drop is a restart (counters start again at "
                "zero, which rate() handles)."
            ),
            (0, 58, 8, 7),
            "s",
            [_query(f"time() - process_start_time_seconds{{{PROXY}}}", "{{instance}}")],
            calcs=["lastNotNull"],
        ),
        _timeseries(
            "Memory (RSS)",
            "Resident memory of each proxy process.",
            (8, 58, 8, 7),
            "bytes",
            [_query(f"process_resident_memory_bytes{{{PROXY}}}", "{{instance}}")],
            calcs=["lastNotNull", "max"],
        ),
        _timeseries(
            "CPU",
            "CPU time per second of each proxy process (1 = one core busy).",
            (16, 58, 8, 7),
            "percentunit",
            [
                _query(
                    f"rate(process_cpu_seconds_total{{{PROXY}}}[$__rate_interval])",
                    "{{instance}}",
                )
            ],
        ),
    ]
    return _dashboard(
        "sinch-sms-overview",
        "Sinch SMS: overview",
        (
            "What the Sinch SMS REST API answers your services, from the sinch-sms-exporter proxies: "
            "traffic, answers by status and code, latency, upstream errors, exporter health. Fleet-wide "
            "panels read the recording rules of prometheus/recording.yml."
        ),
        _variables(),
        panels + _delivery_row(y=65),
    )


def _delivery_row(y: int) -> list[Any]:
    """Delivery reports and the callbacks that carry them (docs/architecture.md, "Callbacks")."""
    final = "|".join(labels.FINAL_DELIVERY_STATUSES)
    failed = "|".join(labels.FAILED_DELIVERY_STATUSES)

    def reports(by: str = "", status: str = "", *, fn: str = "rate", window: str = "$__rate_interval") -> str:
        """Messages per second (or in the window) of sinch_sms_delivery_reports_total, summed `by`."""
        where = f'status{"=~" if "|" in status else "="}"{status}", {PROXY}' if status else PROXY
        return f"sum{f' by ({by}) ' if by else ''}({fn}(sinch_sms_delivery_reports_total{{{where}}}[{window}]))"

    failures = reports("status, code", failed, fn="increase", window="$__range")
    delivered = reports(status=DELIVERED)
    all_final = reports(status=final)
    return [
        _row("Delivery", y),
        _stat(
            "Delivery rate",
            "Share of delivered among the messages whose delivery report reached a final status "
            f"({', '.join(labels.FINAL_DELIVERY_STATUSES)}), from the delivery reports "
            "Sinch posted through the proxy's callback listeners. No data: no final report in the window.",
            (0, y + 1, 6, 8),
            "percentunit",
            [_query(f"({delivered} or 0 * {all_final}) / {all_final}", "delivered")],
            steps=[("red", None), ("orange", 0.9), ("green", 0.98)],
        ),
        _timeseries(
            "Delivery status mix",
            "Share of each delivery status among the reported messages, intermediate "
            f"({', '.join(labels.INTERMEDIATE_DELIVERY_STATUSES)}) and final, stacked to 100%.",
            (6, y + 1, 18, 8),
            "percentunit",
            [
                _query(
                    f"{reports('status')} / ignoring (status) group_left {reports()}",
                    "{{status}}",
                )
            ],
            stacked=True,
        ),
        _table(
            "Top delivery failure codes",
            "The ten (status, code) pairs of failed final statuses "
            f"({', '.join(labels.FAILED_DELIVERY_STATUSES)}) with the most messages over the "
            "dashboard's time range (`none`: the report carried no code). Click a row for the code's "
            "runbook section (operators' codes outside Sinch's list share one).",
            (0, y + 9, 8, 8),
            "short",
            [
                _query(
                    f"sort_desc(topk(10, {_runbook_code(_show_no_code(failures))}) > 0)",
                    "__auto",
                    instant_table=True,
                )
            ],
            hidden=["Time"],
            link_only=[RUNBOOK_CODE],
            data_links=[
                _link(
                    "Runbook: delivery code ${__data.fields.code}",
                    DELIVERY_CODE_ANCHOR + "${__data.fields." + RUNBOOK_CODE + "}",
                )
            ],
        ),
        _timeseries(
            "Callbacks by receiver answer",
            "Callbacks per second (delivery reports and inbound messages) by the HTTP status the service's "
            "receiver answered Sinch: 5xx and 429 make Sinch retry (reports arrive late), other 4xx make "
            "it drop them.",
            (8, y + 9, 8, 8),
            "reqps",
            [
                _query(
                    f"sum by (status) (rate(sinch_sms_callbacks_total{{{PROXY}}}[$__rate_interval]))",
                    "{{status}}",
                )
            ],
            stacked=True,
        ),
        _timeseries(
            "Callback errors by reason",
            "Callbacks per second the service's receiver did not answer (connect, dns, timeout, tls, closed, "
            "protocol, other): Sinch got a 502 from the proxy and retries.",
            (16, y + 9, 8, 8),
            "reqps",
            [
                _query(
                    f"sum by (reason) (rate(sinch_sms_callback_errors_total{{{PROXY}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            stacked=True,
        ),
    ]


def drilldown() -> builders.Dashboard:
    """Raw series ($__rate_interval): every error answer by endpoint, method, status and code, per proxy."""
    panels = [
        _timeseries(
            "Error answers by endpoint and code",
            (
                "4xx and 5xx answers per second by endpoint, status and JSON code. Click a series for "
                "the runbook section of its code or status."
            ),
            (0, 0, 24, 9),
            "reqps",
            [
                _query(
                    _show_no_code(f"sum by (endpoint, status, code) ({_rate(RESPONSES, f'{ERRORS}, ', CODE)})"),
                    "{{endpoint}} {{status}} {{code}}",
                )
            ],
            links=[_link("Runbook: error codes", "error-codes")],
            data_links=[
                _link("Runbook: code ${__field.labels.code}", "code-${__field.labels.code}"),
                _link("Runbook: status ${__field.labels.status}", "status-${__field.labels.status}"),
            ],
        ),
        _table(
            "Error answers in the time range",
            (
                "Count of every (region, endpoint, method, status, code) error answer over the dashboard's "
                "time range, largest first. Click a cell for the runbook."
            ),
            (0, 9, 12, 9),
            "short",
            [
                _query(
                    "sort_desc("
                    + _show_no_code(
                        "sum by (region, endpoint, method, status, code) "
                        f"({_rate(RESPONSES, f'{ERRORS}, ', CODE, fn='increase', window='$__range')})"
                    )
                    + " > 0)",
                    "__auto",
                    instant_table=True,
                )
            ],
            links=[_link("Runbook")],
            data_links=[
                _link("Runbook: code ${__data.fields.code}", "code-${__data.fields.code}"),
                _link("Runbook: status ${__data.fields.status}", "status-${__data.fields.status}"),
            ],
            hidden=["Time"],
        ),
        _timeseries(
            "Error share by endpoint",
            "Share of 4xx and 5xx among each endpoint's answers: 0 for an endpoint with traffic and no error.",
            (12, 9, 12, 9),
            "percentunit",
            [
                _query(
                    f"(sum by (endpoint) ({_rate(RESPONSES, f'{ERRORS}, ')}) "
                    f"or 0 * sum by (endpoint) ({_rate(RESPONSES)})) / sum by (endpoint) ({_rate(RESPONSES)})",
                    "{{endpoint}}",
                )
            ],
            links=[_link("Runbook: HTTP statuses", "http-statuses")],
        ),
        _timeseries(
            "Answers by endpoint and status",
            "All answers per second by endpoint and HTTP status.",
            (0, 18, 12, 8),
            "reqps",
            [
                _query(
                    f"sum by (endpoint, status) ({_rate(RESPONSES)})",
                    "{{endpoint}} {{status}}",
                )
            ],
        ),
        _timeseries(
            "Error answers by proxy instance",
            (
                "4xx and 5xx answers per second per proxy: one sidecar standing out (a 401 storm) points "
                "at its service's configuration."
            ),
            (12, 18, 12, 8),
            "reqps",
            [
                _query(
                    f"sum by (instance, status) ({_rate(RESPONSES, f'{ERRORS}, ', CODE)})",
                    "{{instance}} {{status}}",
                )
            ],
            links=[_link("Runbook: 401 Unauthorized", "status-401")],
            data_links=[_link("Runbook: status ${__field.labels.status}", "status-${__field.labels.status}")],
        ),
        _timeseries(
            "Latency p50 / p95 / p99 by endpoint",
            "Answer time quantiles per endpoint over the rate interval, from the raw histogram.",
            (0, 26, 12, 8),
            "s",
            _quantiles("endpoint", _rate("sinch_sms_request_duration_seconds_bucket"), "{{endpoint}}"),
        ),
        _timeseries(
            "Latency p95 by status class",
            (
                "95th percentile answer time per endpoint and status class: slow errors (5xx) and slow "
                "successes are different problems."
            ),
            (12, 26, 12, 8),
            "s",
            [
                _query(
                    "histogram_quantile(0.95, sum by (le, endpoint, status_class) "
                    f"({_rate('sinch_sms_request_duration_seconds_bucket')}))",
                    "{{endpoint}} {{status_class}}",
                )
            ],
        ),
        _timeseries(
            "Upstream errors by endpoint and reason",
            "Requests per second without any answer from Sinch (the service got a 502), by endpoint and reason.",
            (0, 34, 12, 8),
            "reqps",
            [
                _query(
                    f"sum by (endpoint, reason) ({_rate('sinch_sms_upstream_errors_total')})",
                    "{{endpoint}} {{reason}}",
                )
            ],
            links=[_link("Runbook: upstream errors", "upstream-errors")],
            data_links=[_link("Runbook: reason ${__field.labels.reason}", "upstream-${__field.labels.reason}")],
        ),
        _timeseries(
            "Client aborts by endpoint",
            "Requests per second the services abandoned before Sinch answered.",
            (12, 34, 12, 8),
            "reqps",
            [
                _query(
                    f"sum by (endpoint) ({_rate('sinch_sms_client_aborts_total')})",
                    "{{endpoint}}",
                )
            ],
        ),
    ]
    method = _query_variable(
        "method",
        "Method",
        'label_values(sinch_sms_responses_total{region=~"$region"}, method)',
        "HTTP method of the request.",
    )
    code = _query_variable(
        "code",
        "Code",
        'label_values(sinch_sms_responses_total{region=~"$region", status=~"4..|5.."}, code)',
        "JSON error code of the answer (All also matches answers without a code).",
    )
    return _dashboard(
        "sinch-sms-drilldown",
        "Sinch SMS: errors by code and endpoint",
        (
            "Drill-down from the overview: every error answer by endpoint, method, status and code, "
            "per proxy instance, from the raw series ($__rate_interval)."
        ),
        _variables(method, code),
        panels,
    )


def render_all() -> dict[str, str]:
    """File name → JSON text, as committed under dashboards/."""
    boards = {OVERVIEW: overview(), DRILLDOWN: drilldown()}
    return {name: json.dumps(_exported(board), indent=2, ensure_ascii=False) + "\n" for name, board in boards.items()}
