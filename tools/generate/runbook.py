"""docs/runbook.md, rendered from the catalog and contract.alerts.

Why generated: a status, code or alert is described once, in the contract; the runbook page
(and the alerts' annotations, alert_rules.py) are derived from it, and `make check` fails when
the committed page is stale. Every section has an explicit anchor: alert `runbook_url`s and
dashboard links open them.

    python -m tools.generate.runbook    # print the page (make generate writes it)
"""

from __future__ import annotations

import sys

from sinch_sms_exporter.contract import alerts, catalog, delivery, labels
from sinch_sms_exporter.contract.alerts import AlertDoc
from sinch_sms_exporter.contract.catalog import CodeInfo, StatusInfo
from tools.generate import causes

# --- the runbook page ----------------------------------------------------------------------


def _heading(level: int, anchor: str, text: str) -> str:
    # An explicit anchor keeps runbook_url stable whatever a renderer does with heading slugs.
    return f'{"#" * level} <a id="{anchor}"></a>{text}'


def _alert_ref(name: str | None) -> str:
    if name is None:
        return "none"
    alert = alerts.ALERTS_BY_NAME[name]
    return f"[`{name}`](#{alert.anchor}) ({alert.severity})"


def _entry_ref(info: StatusInfo | CodeInfo) -> str:
    if isinstance(info, CodeInfo):
        return f"[{info.status} `{info.code}`](#{info.anchor})"
    return f"[{info.status} {info.reason}](#{info.anchor})"


def _alert_section(alert: AlertDoc) -> list[str]:
    lines = [_heading(3, alert.anchor, alert.name), ""]
    lines.append(f"**Severity:** {alert.severity}. **Fires when** {alert.when}")
    lines.append(f"Thresholds, windows and why: [alerts.md](alerts.md#{alert.anchor}).")
    lines.append("")
    behind = causes(alert)
    if behind:
        lines.append("**Answers behind it:** " + ", ".join(_entry_ref(c) for c in behind) + ".")
        lines.append("")
        for cause in behind:
            lines.append(f"- {_entry_ref(cause)}: {cause.tip}")
    else:
        lines += [f"**What it means:** {alert.meaning}", "", f"**What to do:** {alert.todo}"]
    return [*lines, ""]


def _status_section(info: StatusInfo) -> list[str]:
    lines = [_heading(3, info.anchor, f"{info.status} {info.reason}"), ""]
    lines += [f"**What it means:** {info.meaning}", "", f"**What to do:** {info.tip}", ""]
    lines.append(f"**Alert:** {_alert_ref(info.alert)}.")
    codes = catalog.codes_for_status(info.status)
    if codes:
        lines += ["", "**Codes:** " + ", ".join(_entry_ref(c) for c in codes) + "."]
    return [*lines, ""]


def _code_section(info: CodeInfo) -> list[str]:
    status = catalog.STATUSES[info.status]
    lines = [_heading(3, info.anchor, f"{info.status} `{info.code}`"), ""]
    lines += [f"**What it means:** {info.meaning}", "", f"**What to do:** {info.tip}", ""]
    lines += [f"**Alert:** {_alert_ref(info.alert)}.", ""]
    lines += [f"**Example answer:** `{info.status} {status.reason}` with", ""]
    lines += ["```json", f'{{"code": "{info.code}", "text": "{info.text}"}}', "```", ""]
    return lines


def _other_status_alert(status: int) -> str:
    return alerts.ALERT_SERVER_ERROR_SPIKE if status >= 500 else alerts.ALERT_CLIENT_ERROR_BURST


def _other_statuses_section() -> list[str]:
    """502 and 504 in full (gateways on the way to Sinch are common), the rest as a table."""
    lines = [
        _heading(2, "other-statuses", "Other statuses"),
        "",
        "Statuses the Sinch SMS API does not document. They come from something between the proxy",
        "and Sinch's API servers (Sinch's edge, a load balancer, an egress proxy of yours) or from an",
        "API change; the proxy counts them like any answer. 4xx count towards",
        f"{_alert_ref(alerts.ALERT_CLIENT_ERROR_BURST)}, 5xx towards {_alert_ref(alerts.ALERT_SERVER_ERROR_SPIKE)}.",
        "",
    ]
    for status in (502, 504):
        reason, meaning = alerts.OTHER_STATUSES[status]
        lines += [_heading(3, f"status-{status}", f"{status} {reason}"), ""]
        lines += [f"**What it means:** {meaning}", "", f"**What to do:** {alerts.OTHER_5XX_ADVICE}", ""]
        lines += [f"**Alert:** {_alert_ref(_other_status_alert(status))}.", ""]
    lines += [
        _heading(3, "status-other", "The others"),
        "",
        f"**What to do** for a 4xx: {alerts.OTHER_4XX_ADVICE} For a 5xx: {alerts.OTHER_5XX_ADVICE}",
        "",
        "| status | what it usually means | alert |",
        "| --- | --- | --- |",
    ]
    for status, (reason, meaning) in alerts.OTHER_STATUSES.items():
        if status in (502, 504):
            continue
        alert = _other_status_alert(status)
        anchor = alerts.ALERTS_BY_NAME[alert].anchor
        lines.append(f'| <a id="status-{status}"></a>{status} {reason} | {meaning} | [`{alert}`](#{anchor}) |')
    return [*lines, ""]


def _no_code_sections() -> list[str]:
    no_code = [s.status for s in catalog.STATUSES.values() if s.status >= 400 and s.body != "json_code"]
    return [
        _heading(3, f"code-{labels.NO_CODE_SHOWN}", f"No code (`{labels.NO_CODE_SHOWN}` on the dashboards)"),
        "",
        '**What it means:** The answer carried no JSON `code` (`code=""` in the metric; the dashboards',
        f"show `{labels.NO_CODE_SHOWN}`): a status whose body has none ({', '.join(map(str, no_code))} and the",
        "[other statuses](#other-statuses)), or a 400/403 whose body was not JSON, had no `code` string,",
        "or was over `--body-limit`.",
        "",
        "**What to do:** Look at the answer's status: its section ([HTTP statuses](#http-statuses),",
        "[other statuses](#other-statuses)) says what it means. A 400 or 403 without a code is unusual",
        "for the Sinch SMS API: something else on the way (a gateway, an egress proxy) may have answered.",
        "",
        _heading(3, "code-other", "`other`, and codes outside the catalog"),
        "",
        "**What it means:** Sinch adds codes over time: well-formed codes outside this list are counted",
        "verbatim up to `--code-cap` distinct codes, then as `other`; a `code` string that is not",
        "well-formed (too long, odd characters) is counted as `other` too.",
        "",
        "**What to do:** The answer's `text` field names the problem; compare with Sinch's current list",
        'of error codes. If `sinch_sms_exporter_label_overflow_total{label="code"}` grows, the cap was',
        "reached: raise `--code-cap`.",
        "",
    ]


def _delivery_sections() -> list[str]:
    """Delivery statuses and codes (sinch_sms_delivery_reports_total), and the receiver's answers."""
    failure = _alert_ref(alerts.ALERT_DELIVERY_FAILURE_RATE)
    lines = [
        _heading(2, "delivery-statuses", "Delivery statuses"),
        "",
        "`sinch_sms_delivery_reports_total{status=…}`: messages by the delivery status Sinch reported in",
        "the callbacks the service's receiver accepted (lowercased; a status Sinch adds later is",
        f"`other`). Failed final statuses count towards {failure}.",
        "",
        "| status | final | counts as failed |",
        "| --- | --- | --- |",
    ]
    for info in delivery.STATUS_INFO.values():
        final = "yes" if info.final else "no (intermediate)"
        lines.append(f"| [`{info.status}`](#{info.anchor}) | {final} | {'yes' if info.failed else 'no'} |")
    lines.append("")
    for info in delivery.STATUS_INFO.values():
        lines += [_heading(3, info.anchor, f"`{info.status}`"), ""]
        lines += [f"**What it means:** {info.meaning}", "", f"**What to do:** {info.advice}", ""]
    lines += [
        _heading(3, "delivery-status-other", "`other`"),
        "",
        "**What it means:** A status outside Sinch's ten (Sinch may add some), or a report whose",
        "`status` was missing or not a string.",
        "",
        "**What to do:** Look at a few such callbacks in the receiver's logs; if Sinch added a status,",
        "this list needs it.",
        "",
        _heading(2, "delivery-codes", "Delivery codes"),
        "",
        "`sinch_sms_delivery_reports_total{code=…}`: the numeric code of a delivery report. `0` and",
        "Sinch's own 400-408, 410-418 are always kept; other integers (operators' SMPP codes, MMS",
        'codes) up to `--delivery-code-cap` distinct values, then `other`; `code=""` (`none` on the',
        "dashboards) means the report carried no integer code.",
        "",
        "| code | name | usual status | MMS only |",
        "| --- | --- | --- | --- |",
    ]
    for code in delivery.CODE_INFO.values():
        mms = "yes" if code.mms_only else ""
        lines.append(f"| [`{code.code}`](#{code.anchor}) | {code.name} | `{code.status}` | {mms} |")
    lines.append("")
    for code in delivery.CODE_INFO.values():
        title = f"`{code.code}` {code.name}" + (" (MMS only)" if code.mms_only else "")
        lines += [_heading(3, code.anchor, title), ""]
        lines += [f"**What it means:** {code.meaning}", "", f"**What to do:** {code.advice}", ""]
    lines += [
        _heading(3, f"delivery-code-{labels.NO_CODE_SHOWN}", f"No code (`{labels.NO_CODE_SHOWN}`) and `other`"),
        "",
        "**What it means:** `none`: the report had no integer `code`. `other`: an integer outside",
        "0-2147483647, or a new code past the cap.",
        "",
        "**What to do:** Codes outside Sinch's list come from operators (SMPP error codes): ask Sinch",
        "support what a frequent one means on your routes. If",
        '`sinch_sms_exporter_label_overflow_total{label="delivery_code"}` grows, raise `--delivery-code-cap`.',
        "",
        _heading(2, "callback-receiver", "Callback receiver answers"),
        "",
        "`sinch_sms_callbacks_total{type=…, status=…}` counts every callback by its `type` and the status",
        "the service's receiver answered; `sinch_sms_callback_errors_total{reason=…}` the callbacks it did",
        "not answer (Sinch got a 502 from the sidecar). What Sinch does next depends on that answer:",
        "",
        "| receiver answer | Sinch | delivery reports counted | alert |",
        "| --- | --- | --- | --- |",
        "| 2xx | done | yes | |",
        f"| 5xx, 429, no answer | retries after 5 s, 10 s, 20 s, … up to 22 h 45 min | not yet | "
        f"{_alert_ref(alerts.ALERT_CALLBACK_RECEIVER_FAILING)} |",
        f"| other 4xx | drops the callback for good | never | {_alert_ref(alerts.ALERT_CALLBACKS_REJECTED)} |",
        "",
        "The reasons of `sinch_sms_callback_errors_total` are those of the",
        "[upstream errors](#upstream-errors), with the service's receiver in Sinch's place.",
        "",
        _heading(3, "callback-type-none", 'Callbacks with `type=""` or `type="other"`'),
        "",
        '**What it means:** `""`: the body was not a JSON object with a string `type` (or was over',
        "`--body-limit`): not a Sinch callback, or a truncated one. `other`: a `type` Sinch added.",
        "",
        "**What to do:** Check who else posts to the callback URL (scanners, health checks of an",
        "ingress) and restrict it; for a new Sinch type, read Sinch's release notes.",
        "",
        _heading(3, "polling", "Polled delivery reports are not counted"),
        "",
        "Answers of `batches/{batch_id}/delivery_report`, `…/delivery_report/{recipient}` and",
        "`delivery_reports` are snapshots a service asks for, as often as it likes: counting them would",
        "count the same message again on every poll. They count as API answers",
        "(`sinch_sms_responses_total`) only. Delivery outcomes come from callbacks: put the sidecar's",
        "callback listener in front of the service's receiver (`--callback-upstream`).",
        "",
    ]
    return lines


def render() -> str:
    """docs/runbook.md, byte for byte."""
    out = [
        "<!-- Generated from addon/sinch_sms_exporter/contract/{catalog,alerts}.py by tools/generate/runbook.py:",
        "     run `make generate`. Do not edit: `make check` compares. -->",
        "",
        "# Sinch SMS runbook",
        "",
        "What each answer of the Sinch SMS REST API means, what to do about it, and which alert",
        "fires. Every alert's `runbook_url` opens a section of this page; the thresholds, windows",
        "and `for:` durations are in [alerts.md](alerts.md). The counts behind every section are",
        '`sinch_sms_responses_total{status="…", code="…"}` (Grafana: "Sinch SMS: errors by code',
        'and endpoint").',
        "",
        "- [Alerts](#alerts)",
        "- [HTTP statuses](#http-statuses)",
        "- [Other statuses](#other-statuses) (not documented by Sinch: gateways on the way)",
        "- [Error codes](#error-codes)",
        "- [Upstream errors](#upstream-errors) (no answer from Sinch)",
        "- [Delivery statuses](#delivery-statuses), [delivery codes](#delivery-codes) and the",
        "  [callback receiver's answers](#callback-receiver) (callbacks from Sinch)",
        "",
        "## Alerts",
        "",
        "| alert | severity | section |",
        "| --- | --- | --- |",
    ]
    out += [f"| `{a.name}` | {a.severity} | [{a.anchor}](#{a.anchor}) |" for a in alerts.ALERTS]
    out.append("")
    for alert in alerts.ALERTS:
        out += _alert_section(alert)
    out += ["## HTTP statuses", ""]
    for status in catalog.STATUSES.values():
        out += _status_section(status)
    out += _other_statuses_section()
    out += [
        "## Error codes",
        "",
        "The JSON `code` of a 400 or 403 answer. Codes outside this list (Sinch adds codes over",
        'time) are counted verbatim up to `--code-cap`, then as `other`; `code=""` means the',
        "answer carried no code.",
        "",
    ]
    for code in catalog.CODES.values():
        out += _code_section(code)
    out += _no_code_sections()
    out += [
        "## Upstream errors",
        "",
        "`sinch_sms_upstream_errors_total{reason=…}`: requests that got no complete answer from",
        f"Sinch; the service got a 502 from the proxy. Alert: {_alert_ref(alerts.ALERT_UPSTREAM_UNREACHABLE)}.",
        "",
    ]
    for reason, (meaning, todo) in alerts.UPSTREAM_REASONS.items():
        out += [_heading(3, f"upstream-{reason}", f"`{reason}`"), "", meaning, "", f"**What to do:** {todo}", ""]
    out += _delivery_sections()
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
