"""The runbook (docs/runbook.md) and the alerts' annotations, rendered from the catalog.

Why generated: a status or code is described once, in catalog.py; the runbook page and the
`summary`/`description`/`runbook_url` annotations of prometheus/alerts.yml are derived from
it, and a test fails when either file is stale. Thresholds and `for:` durations stay in
alerts.yml (people review PromQL there), only the annotations are written by this module.

    python -m tools.generate.runbook            # print the runbook
    python -m tools.generate.runbook --write    # rewrite docs/runbook.md + alert annotations
    python -m tools.generate.runbook --check    # exit 1 when either is stale (CI)

Imports only the catalog (and ruamel.yaml to edit alerts.yml in place, comments kept).
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import FoldedScalarString

from sinch_sms_exporter.contract import catalog, delivery
from sinch_sms_exporter.contract.catalog import CodeInfo, StatusInfo

#: Where the rendered runbook is published; every `runbook_url` starts with it. Forks change
#: this one line and run `--write` (docs/alerts.md explains).
RUNBOOK_URL = "https://github.com/sinch-sms-exporter/sinch-sms-exporter/blob/main/docs/runbook.md"
RUNBOOK_PATH = Path("docs/runbook.md")
ALERTS_PATH = Path("prometheus/alerts.yml")
#: The scrape job name SinchSmsExporterDown watches (the one rule that names a job).
EXPORTER_JOB = "sinch-sms-exporter"

#: What each `reason` of sinch_sms_upstream_errors_total means and what to check; the keys
#: are labels.UPSTREAM_ERROR_REASONS (a test keeps them equal).
UPSTREAM_REASONS: dict[str, tuple[str, str]] = {
    "connect": (
        "The TCP connection to the Sinch host failed: refused or unreachable.",
        "Check egress from the pod or host to `{region}.sms.api.sinch.com:443` (firewall, "
        "NetworkPolicy, egress proxy) and the `--upstream` URL.",
    ),
    "dns": (
        "The Sinch host name did not resolve.",
        "Check the `--upstream` host name for typos and the resolver (`getent hosts us.sms.api.sinch.com`).",
    ),
    "timeout": (
        "Sinch sent no response headers within `--upstream-timeout` (30 s by default).",
        "Check https://status.sinch.com; look at the latency panels for a slow region; raise "
        "`--upstream-timeout` only if Sinch is known to be slow and the callers wait longer.",
    ),
    "tls": (
        "The TLS handshake with the upstream failed (certificate, protocol).",
        "An intercepting egress proxy or a missing CA is the usual cause: see `--upstream-ca`; "
        "check the upstream URL really is a Sinch host.",
    ),
    "closed": (
        "The upstream closed or reset the connection before the answer was complete.",
        "Usually a network middlebox or a Sinch-side incident; check https://status.sinch.com "
        "and the egress path's idle timeouts.",
    ),
    "protocol": (
        "The upstream answered something that is not valid HTTP.",
        "Something other than Sinch answers on the upstream address: check `--upstream` and any egress proxy.",
    ),
    "other": (
        "A failure the proxy could not classify.",
        "Run the proxy with `--log-level debug` for a while and look at the error messages.",
    ),
}


#: What the dashboards show for `code=""` (an answer without a JSON code): Prometheus drops an
#: empty label, and a Grafana data link cannot complete `#code-…` from a label a series lacks, so
#: the error-by-code queries relabel it (label_replace) to this value, which no well-formed
#: Sinch code takes in practice; the runbook has a section for it.
NO_CODE = "none"

#: Statuses the Sinch SMS API does not document, which a gateway, load balancer or egress proxy
#: on the way (or an API change) may answer: status → (reason, what it usually means here).
#: The dashboards' data links open `#status-<status>` for any status the proxy counted, so every
#: standard 4xx and 5xx has a line (a static list: http.HTTPStatus's phrases vary by Python).
OTHER_STATUSES: dict[int, tuple[str, str]] = {
    402: (
        "Payment Required",
        "Not used by the SMS API; a billing or account problem reported by something on the way.",
    ),
    406: ("Not Acceptable", "The `Accept` header asks for something other than JSON."),
    407: ("Proxy Authentication Required", "An egress proxy between the proxy and Sinch wants credentials."),
    408: ("Request Timeout", "The request body did not arrive in time (a stalled client or network)."),
    409: ("Conflict", "The request conflicts with the state of the resource."),
    410: ("Gone", "The resource existed but was removed (retention policy)."),
    411: ("Length Required", "A body was sent without `Content-Length` or chunked encoding."),
    412: ("Precondition Failed", "A conditional header (`If-Match`, …) did not hold."),
    413: ("Content Too Large", "The request body is over a size limit (a huge batch, many recipients)."),
    414: ("URI Too Long", "The path or query string is over a length limit (long query parameters)."),
    416: ("Range Not Satisfiable", "A `Range` header the server cannot serve."),
    417: ("Expectation Failed", "An `Expect` header the server does not accept."),
    418: ("I'm a Teapot", "Not a real answer of any API: a test double or a misrouted upstream."),
    421: ("Misdirected Request", "The connection reached a server that does not serve this host: check `--upstream`."),
    422: ("Unprocessable Content", "The body is well-formed JSON the server cannot process."),
    423: ("Locked", "The resource is locked."),
    424: ("Failed Dependency", "A request this one depends on failed."),
    425: ("Too Early", "The server refuses to process a request that might be replayed (TLS early data)."),
    426: ("Upgrade Required", "The server wants another protocol (TLS, HTTP/2)."),
    428: ("Precondition Required", "The server wants a conditional request."),
    431: ("Request Header Fields Too Large", "Headers over a size limit (a huge `Authorization` or cookie)."),
    451: ("Unavailable For Legal Reasons", "Blocked for legal reasons by something on the way."),
    501: ("Not Implemented", "The method is not supported by the server at all."),
    502: (
        "Bad Gateway",
        "A gateway or load balancer between the proxy and Sinch's API servers (Sinch's edge, or an "
        "egress proxy of yours) got no valid answer from behind it. The proxy's own 502, for a "
        "request that got no answer at all, is not counted here: see [upstream errors](#upstream-errors).",
    ),
    504: (
        "Gateway Timeout",
        "A gateway or load balancer between the proxy and Sinch's API servers timed out waiting for "
        "them. The proxy's own timeout (`--upstream-timeout`) is counted as an upstream error "
        "`timeout`, not here.",
    ),
    505: ("HTTP Version Not Supported", "The server refuses the HTTP version used."),
    506: ("Variant Also Negotiates", "A content negotiation misconfiguration on the server."),
    507: ("Insufficient Storage", "The server ran out of storage for the request."),
    508: ("Loop Detected", "A gateway loop: the request came back to where it started; check proxies on the way."),
    510: ("Not Extended", "The server wants extensions to the request."),
    511: ("Network Authentication Required", "A captive portal or egress gateway wants a login."),
}
_OTHER_4XX_ADVICE = (
    "A client error the Sinch SMS API does not document: Sinch (or something on the way) refused what "
    "the service sent. Look at the answer's body, and at what changed in how the service builds "
    "requests or in the network path to Sinch."
)
_OTHER_5XX_ADVICE = (
    "Retry with backoff. Check https://status.sinch.com; if an egress proxy or gateway sits between "
    "the proxy and Sinch, check its logs; if the 5xx persist, contact your Sinch account manager."
)


@dataclass(frozen=True)
class AlertDoc:
    """What the runbook and the annotations say about one alert."""

    name: str
    severity: str
    summary: str
    #: Opening of the description: a Go template ($labels, $value) saying what was seen.
    lead: str
    #: For the runbook, in words (numbers live in alerts.yml and docs/alerts.md).
    when: str = ""
    #: Runbook prose: what it means and what to do (alerts the catalog does not cover).
    meaning: str = ""
    todo: str = ""

    @property
    def causes(self) -> tuple[StatusInfo | CodeInfo, ...]:
        """The catalog entries whose answers make this alert fire."""
        statuses = tuple(s for s in catalog.STATUSES.values() if s.alert == self.name)
        codes = tuple(c for c in catalog.CODES.values() if c.alert == self.name)
        return statuses + codes

    @property
    def anchor(self) -> str:
        return f"alert-{self.name.lower()}"

    @property
    def runbook_anchor(self) -> str:
        """The section runbook_url opens: the one catalog entry behind the alert, if one."""
        causes = self.causes
        return causes[0].anchor if len(causes) == 1 else self.anchor

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_URL}#{self.runbook_anchor}"

    def description(self) -> str:
        return " ".join(part for part in (self.lead, _advice(self)) if part)


def _what(info: StatusInfo | CodeInfo) -> str:
    return f"{info.meaning} What to do: {info.tip}"


def _label(info: StatusInfo | CodeInfo) -> str:
    if isinstance(info, CodeInfo):
        return f"{info.status} {info.code}"
    return f"{info.status} {info.reason}"


def _advice(alert: AlertDoc) -> str:
    """The catalog's meaning and tip for the answers behind the alert, as a Go template
    where the firing series' labels choose between several."""
    causes = alert.causes
    if not causes:
        return f"What to do: {alert.todo}"  # the lead already says what it means
    if len(causes) == 1:
        return _what(causes[0])
    if alert.name == catalog.ALERT_CLIENT_ERROR_BURST:
        return _client_error_advice(causes)
    return " ".join(f"{_label(c)}: {_what(c)}" for c in causes)


def _client_error_advice(causes: Sequence[StatusInfo | CodeInfo]) -> str:
    """One branch per catalog code, then per status without codes (404, 405, 415); a code
    outside the catalog (or none) on a 400/403 gets the generic advice."""
    branches = [(f'eq $labels.code "{c.code}"', _what(c)) for c in causes if isinstance(c, CodeInfo)]
    branches += [
        (f'eq $labels.status "{s.status}"', _what(s))
        for s in causes
        if isinstance(s, StatusInfo) and not catalog.codes_for_status(s.status)
    ]
    fallback = (
        "An answer the catalog does not describe: its `text` field names the problem; compare "
        "with what the service's last deploy changed in how it builds requests."
    )
    template = "".join(
        f"{{{{ {'if' if i == 0 else 'else if'} {cond} }}}}{text}" for i, (cond, text) in enumerate(branches)
    )
    return f"{template}{{{{ else }}}}{fallback}{{{{ end }}}}"


_WHERE = "in region {{ $labels.region }}"
#: "403 unknown_group", or "404" where the answer had no code (the empty label is absent).
_ANSWER = "{{ $labels.status }}{{ with $labels.code }} {{ . }}{{ end }}"
ALERTS: tuple[AlertDoc, ...] = (
    AlertDoc(
        catalog.ALERT_ACCOUNT_BLOCKED,
        "critical",
        "Sinch SMS account blocked ({{ $labels.region }}): no message is sent",
        f"Sinch answered `403 blocked_account` {_WHERE} within the last 15 minutes.",
        when="any proxy sees a single `403 blocked_account` answer (also the very first answer of a "
        "freshly started proxy); it stays firing for 15 minutes after the last one.",
    ),
    AlertDoc(
        catalog.ALERT_SERVER_ERROR_SPIKE,
        "critical",
        "Sinch SMS answers 5xx to {{ $value | humanizePercentage }} of requests ({{ $labels.region }})",
        f"{{{{ $value | humanizePercentage }}}} of the Sinch SMS API's answers {_WHERE} over the "
        "last 5 minutes were 5xx server errors: those messages were not sent unless the service retried.",
        when="the share of 5xx answers in a region stays above its threshold for minutes (a higher one "
        "where traffic is low), and there are enough of them to rule out a lone 503 at night.",
    ),
    AlertDoc(
        catalog.ALERT_UNAUTHORIZED,
        "critical",
        "Sinch SMS rejects the credentials ({{ $labels.region }}): 401 Unauthorized",
        f"{{{{ $value | humanize }}}} answers with status 401 {_WHERE} in the last hour, and they kept "
        "coming for 10 minutes: a service is sending with a bad token and none of its messages go out.",
        when="401 answers keep coming in a region for minutes, or make up most of a quiet region's answers "
        "for an hour (a single 401 of a client refreshing its token does not count).",
    ),
    AlertDoc(
        catalog.ALERT_RATE_LIMITED,
        "warning",
        "Sinch SMS rate-limits {{ $value | humanizePercentage }} of requests ({{ $labels.region }}): 429",
        f"{{{{ $value | humanizePercentage }}}} of the answers {_WHERE} over the last 10 minutes were "
        "429 Too Many Requests: messages are delayed while the services retry.",
        when="the share of 429 answers in a region stays above its threshold for a quarter of an hour.",
    ),
    AlertDoc(
        catalog.ALERT_MISSING_CALLBACK_URL,
        "warning",
        "Sinch SMS batch asks for delivery reports without a callback URL ({{ $labels.region }})",
        f"Sinch answered `403 missing_callback_url` {_WHERE} within the last 15 minutes: a configuration error.",
        when="any proxy sees a single `403 missing_callback_url` answer; it stays firing for 15 minutes "
        "after the last one.",
    ),
    AlertDoc(
        catalog.ALERT_UPSTREAM_UNREACHABLE,
        "critical",
        "Sinch SMS API unreachable from the proxy for {{ $value | humanizePercentage }} of requests "
        "({{ $labels.region }})",
        f"{{{{ $value | humanizePercentage }}}} of the requests {_WHERE} over the last 5 minutes got no "
        "answer from the Sinch SMS API (refused, DNS, TLS, timeout or reset); the services got 502 "
        "Bad Gateway from the proxy instead. The `reason` label of sinch_sms_upstream_errors_total says which.",
        when="the share of requests in a region that got no answer from Sinch at all stays above its "
        "threshold for minutes, with a floor on their number.",
        meaning="The proxy could not get an answer from Sinch at all: the request may or may not "
        "have reached Sinch, and the service got a 502 from the proxy (never counted as a Sinch answer).",
        todo='Open the overview dashboard\'s "Upstream errors by reason" panel: `connect`/`dns`/`tls` '
        "point at this side's network or configuration (egress, firewall, CA, `--upstream`), "
        "`timeout`/`closed` more often at Sinch: check https://status.sinch.com. The runbook's "
        "upstream-errors section has a line per reason.",
    ),
    AlertDoc(
        catalog.ALERT_CLIENT_ERROR_BURST,
        "warning",
        f"Burst of Sinch SMS {_ANSWER} answers ({{{{ $labels.region }}}}): "
        "{{ $value | humanizePercentage }} of requests",
        f"{{{{ $value | humanizePercentage }}}} of the answers {_WHERE} over the last 10 minutes were "
        f"`{_ANSWER}` (a client error: Sinch refused what the service sent; a recent deploy that changed "
        "how requests are built is the usual suspect).",
        when="one kind of 4xx answer (status and code) makes up a large share of a region's answers for a "
        "quarter of an hour; 401, 429, `blocked_account` and `missing_callback_url` have alerts of "
        "their own.",
    ),
    AlertDoc(
        catalog.ALERT_DELIVERY_FAILURE_RATE,
        "warning",
        "{{ $value | humanizePercentage }} of SMS messages fail to be delivered",
        "{{ $value | humanizePercentage }} of the messages that reached a final delivery status over the "
        "last 15 minutes were not delivered (aborted, rejected, deleted, failed or expired), by the "
        "delivery reports Sinch sent to the service's callback receiver: Sinch accepted them, the "
        "recipients did not get them.",
        when="the share of failed final delivery statuses stays above its threshold for minutes, with a "
        "floor on the number of failed messages.",
        meaning="Sinch took the messages (the API answered 201) but operators did not deliver them. "
        "The delivery code says why: routing and provisioning codes (402, 410, 412) are fixed on your "
        "side or with Sinch, operator outcomes (failed, expired, rejected) point at a destination "
        "network, a sender ID or the content.",
        todo='Open the delivery row of the overview dashboard ("top failure codes") and look up the '
        "leading status and code in the runbook's delivery statuses and delivery codes. A jump across "
        "all codes at once is an operator or route outage: tell Sinch support, with a few batch ids "
        "from your logs.",
    ),
    AlertDoc(
        catalog.ALERT_CALLBACK_RECEIVER_FAILING,
        "warning",
        "The SMS callback receiver fails {{ $value | humanizePercentage }} of Sinch's callbacks",
        "{{ $value | humanizePercentage }} of Sinch's callbacks over the last 10 minutes got a 5xx, a 429 "
        "or no answer at all from the service's callback receiver. Sinch retries them (5 s, 10 s, 20 s, "
        "doubling, for up to 22 h 45 min): delivery reports and inbound messages arrive late, and are "
        "lost after the last retry.",
        when="a share of callback attempts gets 5xx, 429 or no answer from the receiver for minutes, "
        "with a floor on their number.",
        meaning="The service's own webhook endpoint (behind the sidecar's callback listener) is down, "
        "overloaded or erroring. Sinch keeps retrying, so nothing is lost yet, but reports are late and "
        "each retry adds load; 429 also makes Sinch lower its callback throughput.",
        todo="`sinch_sms_callbacks_total` by `status` and `sinch_sms_callback_errors_total` by `reason` "
        "say which: 5xx are the receiver's own errors (its logs), `connect`/`timeout` mean it is not "
        "reachable from the sidecar (is it running? is `--callback-upstream` right?).",
    ),
    AlertDoc(
        catalog.ALERT_CALLBACKS_REJECTED,
        "critical",
        "The SMS callback receiver rejected {{ $value }} of Sinch's callbacks: they are lost",
        "The service's callback receiver answered {{ $value }} of Sinch's callbacks in the last 15 minutes "
        "with a 4xx other than 429. Sinch does not retry those: the delivery reports and inbound messages "
        "(opt-out replies among them) are lost for good.",
        when="the receiver answers a few callbacks in a quarter of an hour with a 4xx status other than 429.",
        meaning="The receiver refused the callbacks: a signature check failing (a rotated or wrong "
        "webhook secret), an authentication it expects and Sinch does not send, a path that no longer "
        "exists (404), or a body it cannot parse (400).",
        todo="`sinch_sms_callbacks_total` by `status` and `type` shows which answer and which callbacks. "
        "401/403: compare the receiver's webhook secret or credentials with the ones configured at "
        "Sinch; 404: the callback URL's path; 400/422: the receiver's parser against Sinch's callback "
        "bodies. The lost reports can still be fetched by polling `batches/{batch_id}/delivery_report`.",
    ),
    AlertDoc(
        catalog.ALERT_EXPORTER_DOWN,
        "warning",
        "sinch-sms-exporter metrics are gone{{ if $labels.instance }} ({{ $labels.instance }}){{ end }}",
        "Prometheus could not scrape {{ if $labels.instance }}{{ $labels.instance }}{{ else }}any "
        f'target{{{{ end }}}} of job "{EXPORTER_JOB}" for 5 minutes: the Sinch alerts are blind there, and '
        "in sidecar mode a dead proxy also means the service cannot reach Sinch.",
        when="Prometheus cannot scrape a proxy's /metrics, or finds no target of the job at all, for minutes.",
        meaning="The proxy's /metrics endpoint does not answer Prometheus, or no target of the job "
        f'"{EXPORTER_JOB}" is discovered at all. In sidecar mode the proxy is in the data path: if '
        "its process is gone, the service cannot reach Sinch either.",
        todo="Check the proxy container or process (restarts, logs, `curl http://HOST:19880/healthz`), "
        f"that the scrape config uses `job_name: {EXPORTER_JOB}` and reaches port 19880, and any "
        "`--metrics-web-config` credentials Prometheus needs.",
    ),
)
ALERTS_BY_NAME = {a.name: a for a in ALERTS}


# --- the runbook page ----------------------------------------------------------------------


def _heading(level: int, anchor: str, text: str) -> str:
    # An explicit anchor keeps runbook_url stable whatever a renderer does with heading slugs.
    return f'{"#" * level} <a id="{anchor}"></a>{text}'


def _alert_ref(name: str | None) -> str:
    if name is None:
        return "none"
    alert = ALERTS_BY_NAME[name]
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
    causes = alert.causes
    if causes:
        lines.append("**Answers behind it:** " + ", ".join(_entry_ref(c) for c in causes) + ".")
        lines.append("")
        for cause in causes:
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
    return catalog.ALERT_SERVER_ERROR_SPIKE if status >= 500 else catalog.ALERT_CLIENT_ERROR_BURST


def _other_statuses_section() -> list[str]:
    """502 and 504 in full (gateways on the way to Sinch are common), the rest as a table."""
    lines = [
        _heading(2, "other-statuses", "Other statuses"),
        "",
        "Statuses the Sinch SMS API does not document. They come from something between the proxy",
        "and Sinch's API servers (Sinch's edge, a load balancer, an egress proxy of yours) or from an",
        "API change; the proxy counts them like any answer. 4xx count towards",
        f"{_alert_ref(catalog.ALERT_CLIENT_ERROR_BURST)}, 5xx towards {_alert_ref(catalog.ALERT_SERVER_ERROR_SPIKE)}.",
        "",
    ]
    for status in (502, 504):
        reason, meaning = OTHER_STATUSES[status]
        lines += [_heading(3, f"status-{status}", f"{status} {reason}"), ""]
        lines += [f"**What it means:** {meaning}", "", f"**What to do:** {_OTHER_5XX_ADVICE}", ""]
        lines += [f"**Alert:** {_alert_ref(_other_status_alert(status))}.", ""]
    lines += [
        _heading(3, "status-other", "The others"),
        "",
        f"**What to do** for a 4xx: {_OTHER_4XX_ADVICE} For a 5xx: {_OTHER_5XX_ADVICE}",
        "",
        "| status | what it usually means | alert |",
        "| --- | --- | --- |",
    ]
    for status, (reason, meaning) in OTHER_STATUSES.items():
        if status in (502, 504):
            continue
        alert = _other_status_alert(status)
        anchor = ALERTS_BY_NAME[alert].anchor
        lines.append(f'| <a id="status-{status}"></a>{status} {reason} | {meaning} | [`{alert}`](#{anchor}) |')
    return [*lines, ""]


def _no_code_sections() -> list[str]:
    no_code = [s.status for s in catalog.STATUSES.values() if s.status >= 400 and s.body != "json_code"]
    return [
        _heading(3, f"code-{NO_CODE}", f"No code (`{NO_CODE}` on the dashboards)"),
        "",
        '**What it means:** The answer carried no JSON `code` (`code=""` in the metric; the dashboards',
        f"show `{NO_CODE}`): a status whose body has none ({', '.join(map(str, no_code))} and the",
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
    failure = _alert_ref(catalog.ALERT_DELIVERY_FAILURE_RATE)
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
        _heading(3, f"delivery-code-{NO_CODE}", f"No code (`{NO_CODE}`) and `other`"),
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
        f"{_alert_ref(catalog.ALERT_CALLBACK_RECEIVER_FAILING)} |",
        f"| other 4xx | drops the callback for good | never | {_alert_ref(catalog.ALERT_CALLBACKS_REJECTED)} |",
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
        "<!-- Generated from addon/sinch_sms_exporter/catalog.py and runbook.py by",
        "     `python -m tools.generate.runbook --write`. Do not edit: a test compares. -->",
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
    out += [f"| `{a.name}` | {a.severity} | [{a.anchor}](#{a.anchor}) |" for a in ALERTS]
    out.append("")
    for alert in ALERTS:
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
        f"Sinch; the service got a 502 from the proxy. Alert: {_alert_ref(catalog.ALERT_UPSTREAM_UNREACHABLE)}.",
        "",
    ]
    for reason, (meaning, todo) in UPSTREAM_REASONS.items():
        out += [_heading(3, f"upstream-{reason}", f"`{reason}`"), "", meaning, "", f"**What to do:** {todo}", ""]
    out += _delivery_sections()
    return "\n".join(out).rstrip("\n") + "\n"


# --- the alerts' annotations -----------------------------------------------------------------


def annotations(alert: AlertDoc) -> dict[str, str]:
    return {"summary": alert.summary, "description": alert.description(), "runbook_url": alert.runbook_url}


def _folded(text: str, width: int = 96) -> FoldedScalarString:
    """A `>-` block scalar folded at spaces: readable in the file, one line to Prometheus."""
    scalar = FoldedScalarString(text)
    positions, line_start = [], 0
    for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)[:-1]:
        end = text.index(line, line_start) + len(line)
        if text[end] != " " or text[end + 1 : end + 2] == " ":
            break  # only single spaces fold cleanly
        positions.append(end)
        line_start = end + 1
    scalar.fold_pos = positions  # type: ignore[attr-defined]
    return scalar


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, order and block scalars of the expressions are kept
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _replace_annotations(rule: CommentedMap, rendered: dict[str, str]) -> None:
    """Set a rule's annotations in place, keeping the comment that follows them (ruamel
    attaches the next rule's leading comment and blank line to the last key)."""
    current = rule.get("annotations")
    if not isinstance(current, CommentedMap):
        current = rule["annotations"] = CommentedMap()
    trailing = current.ca.items.get(next(reversed(current)), None) if current else None
    current.fa.set_block_style()
    current.clear()
    current.ca.items.clear()
    for key, value in rendered.items():
        current[key] = _folded(value) if key == "description" else value
    if trailing is not None:
        current.ca.items[next(reversed(current))] = trailing


def sync_alerts(text: str) -> str:
    """alerts.yml with every alerting rule's annotations rendered from ALERTS."""
    yaml = _yaml()
    doc = yaml.load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            alert = ALERTS_BY_NAME.get(rule["alert"])
            if alert is None:
                raise ValueError(f"{rule['alert']}: no AlertDoc in runbook.ALERTS")
            _replace_annotations(rule, annotations(alert))
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def default_root() -> Path:
    """The source checkout this module lives in, else the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / ALERTS_PATH).exists() else Path.cwd()


def stale(root: Path) -> list[Path]:
    """The generated files under `root` that differ from what would be generated."""
    result = []
    if not (root / RUNBOOK_PATH).exists() or (root / RUNBOOK_PATH).read_text() != render():
        result.append(RUNBOOK_PATH)
    alerts = (root / ALERTS_PATH).read_text()
    if sync_alerts(alerts) != alerts:
        result.append(ALERTS_PATH)
    return result


def write(root: Path) -> list[Path]:
    """Regenerate the runbook and the alert annotations under `root`; returns what changed."""
    changed = stale(root)
    (root / RUNBOOK_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / RUNBOOK_PATH).write_text(render())
    (root / ALERTS_PATH).write_text(sync_alerts((root / ALERTS_PATH).read_text()))
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.generate.runbook", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite {RUNBOOK_PATH} and the alerts' annotations")
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    if not (args.write or args.check):
        sys.stdout.write(render())
        return 0
    if not (root / ALERTS_PATH).exists():
        parser.error(f"{root / ALERTS_PATH} not found: pass --root (the repository root)")
    if args.write:
        changed = write(root)
        print("updated: " + (", ".join(map(str, changed)) or "nothing (already current)"))
        return 0
    outdated = stale(root)
    if outdated:
        print(f"stale: {', '.join(map(str, outdated))}; run `python -m tools.generate.runbook --write`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
