"""What each alert is called and what it says: names, severities and prose, as data.

Alert names are a contract (docs/architecture.md, "Alert names"): the rule files, the catalog
(which answers make which alert fire), the runbook and the tests refer to these constants. The
prose here is rendered by tools/generate: into docs/runbook.md and into the `summary`,
`description` and `runbook_url` annotations of prometheus/alerts.yml (thresholds and `for:`
stay in alerts.yml, where people review the PromQL). Summaries and leads are Go templates
($labels, $value) as Prometheus expands them.

Pure data: imports only the label vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from sinch_sms_exporter.contract import labels

ALERT_ACCOUNT_BLOCKED = "SinchSmsAccountBlocked"
ALERT_SERVER_ERROR_SPIKE = "SinchSmsServerErrorSpike"
ALERT_UNAUTHORIZED = "SinchSmsUnauthorized"
ALERT_RATE_LIMITED = "SinchSmsRateLimited"
ALERT_MISSING_CALLBACK_URL = "SinchSmsMissingCallbackUrl"
ALERT_UPSTREAM_UNREACHABLE = "SinchSmsUpstreamUnreachable"
ALERT_EXPORTER_DOWN = "SinchSmsExporterDown"
#: Not named by the contract: a burst of 4xx answers by code (a deploy broke request building).
ALERT_CLIENT_ERROR_BURST = "SinchSmsClientErrorBurst"
#: Callback alerts (docs/architecture.md, "Contracts"): delivery outcomes and the service's receiver.
ALERT_DELIVERY_FAILURE_RATE = "SinchSmsDeliveryFailureRate"
ALERT_CALLBACK_RECEIVER_FAILING = "SinchSmsCallbackReceiverFailing"
ALERT_CALLBACKS_REJECTED = "SinchSmsCallbacksRejected"

#: The scrape job name SinchSmsExporterDown watches (the one rule that names a job).
EXPORTER_JOB = "sinch-sms-exporter"


@dataclass(frozen=True)
class AlertDoc:
    """What the runbook and the annotations say about one alert. Which catalog answers make it
    fire is the catalog's `alert` field; the generators join the two."""

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
    def anchor(self) -> str:
        """The alert's runbook section id."""
        return f"alert-{self.name.lower()}"


_WHERE = "in region {{ $labels.region }}"
#: "403 unknown_group", or "404" where the answer had no code (the empty label is absent).
_ANSWER = "{{ $labels.status }}{{ with $labels.code }} {{ . }}{{ end }}"
ALERTS: tuple[AlertDoc, ...] = (
    AlertDoc(
        ALERT_ACCOUNT_BLOCKED,
        "critical",
        "Sinch SMS account blocked ({{ $labels.region }}): no message is sent",
        f"Sinch answered `403 blocked_account` {_WHERE} within the last 15 minutes.",
        when="any proxy sees a single `403 blocked_account` answer (also the very first answer of a "
        "freshly started proxy); it stays firing for 15 minutes after the last one.",
    ),
    AlertDoc(
        ALERT_SERVER_ERROR_SPIKE,
        "critical",
        "Sinch SMS answers 5xx to {{ $value | humanizePercentage }} of requests ({{ $labels.region }})",
        f"{{{{ $value | humanizePercentage }}}} of the Sinch SMS API's answers {_WHERE} over the "
        "last 5 minutes were 5xx server errors: those messages were not sent unless the service retried.",
        when="the share of 5xx answers in a region stays above its threshold for minutes (a higher one "
        "where traffic is low), and there are enough of them to rule out a lone 503 at night.",
    ),
    AlertDoc(
        ALERT_UNAUTHORIZED,
        "critical",
        "Sinch SMS rejects the credentials ({{ $labels.region }}): 401 Unauthorized",
        f"{{{{ $value | humanize }}}} answers with status 401 {_WHERE} in the last hour, and they kept "
        "coming for 10 minutes: a service is sending with a bad token and none of its messages go out.",
        when="401 answers keep coming in a region for minutes, or make up most of a quiet region's answers "
        "for an hour (a single 401 of a client refreshing its token does not count).",
    ),
    AlertDoc(
        ALERT_RATE_LIMITED,
        "warning",
        "Sinch SMS rate-limits {{ $value | humanizePercentage }} of requests ({{ $labels.region }}): 429",
        f"{{{{ $value | humanizePercentage }}}} of the answers {_WHERE} over the last 10 minutes were "
        "429 Too Many Requests: messages are delayed while the services retry.",
        when="the share of 429 answers in a region stays above its threshold for a quarter of an hour.",
    ),
    AlertDoc(
        ALERT_MISSING_CALLBACK_URL,
        "warning",
        "Sinch SMS batch asks for delivery reports without a callback URL ({{ $labels.region }})",
        f"Sinch answered `403 missing_callback_url` {_WHERE} within the last 15 minutes: a configuration error.",
        when="any proxy sees a single `403 missing_callback_url` answer; it stays firing for 15 minutes "
        "after the last one.",
    ),
    AlertDoc(
        ALERT_UPSTREAM_UNREACHABLE,
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
        ALERT_CLIENT_ERROR_BURST,
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
        ALERT_DELIVERY_FAILURE_RATE,
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
        ALERT_CALLBACK_RECEIVER_FAILING,
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
        ALERT_CALLBACKS_REJECTED,
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
        ALERT_EXPORTER_DOWN,
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


#: What each `reason` of sinch_sms_upstream_errors_total means and what to check: (meaning, what
#: to do); the keys are labels.UPSTREAM_ERROR_REASONS, in order (a test keeps them equal).
UPSTREAM_REASONS: dict[str, tuple[str, str]] = {
    labels.REASON_CONNECT: (
        "The TCP connection to the Sinch host failed: refused or unreachable.",
        "Check egress from the pod or host to `{region}.sms.api.sinch.com:443` (firewall, "
        "NetworkPolicy, egress proxy) and the `--upstream` URL.",
    ),
    labels.REASON_DNS: (
        "The Sinch host name did not resolve.",
        "Check the `--upstream` host name for typos and the resolver (`getent hosts us.sms.api.sinch.com`).",
    ),
    labels.REASON_TIMEOUT: (
        "Sinch sent no response headers within `--upstream-timeout` (30 s by default).",
        "Check https://status.sinch.com; look at the latency panels for a slow region; raise "
        "`--upstream-timeout` only if Sinch is known to be slow and the callers wait longer.",
    ),
    labels.REASON_TLS: (
        "The TLS handshake with the upstream failed (certificate, protocol).",
        "An intercepting egress proxy or a missing CA is the usual cause: see `--upstream-ca`; "
        "check the upstream URL really is a Sinch host.",
    ),
    labels.REASON_CLOSED: (
        "The upstream closed or reset the connection before the answer was complete.",
        "Usually a network middlebox or a Sinch-side incident; check https://status.sinch.com "
        "and the egress path's idle timeouts.",
    ),
    labels.REASON_PROTOCOL: (
        "The upstream answered something that is not valid HTTP.",
        "Something other than Sinch answers on the upstream address: check `--upstream` and any egress proxy.",
    ),
    labels.OTHER: (
        "A failure the proxy could not classify.",
        "Run the proxy with `--log-level debug` for a while and look at the error messages.",
    ),
}


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
OTHER_4XX_ADVICE = (
    "A client error the Sinch SMS API does not document: Sinch (or something on the way) refused what "
    "the service sent. Look at the answer's body, and at what changed in how the service builds "
    "requests or in the network path to Sinch."
)
OTHER_5XX_ADVICE = (
    "Retry with backoff. Check https://status.sinch.com; if an egress proxy or gateway sits between "
    "the proxy and Sinch, check its logs; if the 5xx persist, contact your Sinch account manager."
)


#: ALERT_CLIENT_ERROR_BURST's advice for a 4xx the catalog does not describe (or no code).
CLIENT_ERROR_FALLBACK = (
    "An answer the catalog does not describe: its `text` field names the problem; compare "
    "with what the service's last deploy changed in how it builds requests."
)
