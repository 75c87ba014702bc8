"""Every label value the exporter can emit, defined once: the vocabulary of the metric contract.

The README ("Metrics", "Callbacks") says what each label means; this module says which
values it takes. Classification, metrics, the simulator, the generators and the tests import
these names instead of spelling the strings again. Pure data: no mitmproxy, no prometheus_client.
"""

from __future__ import annotations

import re

#: A value outside a label's known set, or past its cap of distinct values.
OTHER = "other"

#: `code=""`: the answer carried no code (no body, not JSON, no string `code`, over the size limit).
NO_CODE = ""
#: How dashboards and the runbook show NO_CODE (an empty cell cannot be a link or an anchor).
NO_CODE_SHOWN = "none"

#: A well-formed `code` of an error body; a code string of another shape becomes OTHER.
CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# --- reason of sinch_sms_upstream_errors_total: why a request got no complete answer --------
REASON_CONNECT = "connect"  # TCP connect failed (refused, unreachable)
REASON_DNS = "dns"  # the upstream host name did not resolve
REASON_TIMEOUT = "timeout"  # no answer within the upstream timeout
REASON_TLS = "tls"  # TLS handshake with the upstream failed (certificate, protocol)
REASON_CLOSED = "closed"  # the upstream closed or reset the connection before the answer was complete
REASON_PROTOCOL = "protocol"  # the upstream answered something that is not valid HTTP
UPSTREAM_ERROR_REASONS: tuple[str, ...] = (
    REASON_CONNECT,
    REASON_DNS,
    REASON_TIMEOUT,
    REASON_TLS,
    REASON_CLOSED,
    REASON_PROTOCOL,
    OTHER,
)
#: What the proxy tells the client in its own 502 when an upstream failed, by reason: one
#: short line, the same words for every flow (nothing of the request or the upstream in it).
UPSTREAM_ERROR_TEXTS: dict[str, str] = {
    REASON_CONNECT: "cannot connect to the upstream",
    REASON_DNS: "the upstream host name does not resolve",
    REASON_TIMEOUT: "the upstream did not answer within the upstream timeout",
    REASON_TLS: "the TLS handshake with the upstream failed",
    REASON_CLOSED: "the upstream closed the connection before its answer was complete",
    REASON_PROTOCOL: "the upstream's answer is not valid HTTP",
    OTHER: "the upstream failed",
}

# --- method ----------------------------------------------------------------------------------
#: Methods kept verbatim in the `method` label; anything else is OTHER (methods are client-controlled).
KNOWN_METHODS: frozenset[str] = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))

# --- endpoint --------------------------------------------------------------------------------
#: Every endpoint of the Sinch SMS REST API under /xms/v1/{service_plan_id}/.
ENDPOINT_TEMPLATES: tuple[str, ...] = (
    "batches",
    "batches/dry_run",
    "batches/{batch_id}",
    "batches/{batch_id}/delivery_feedback",
    "batches/{batch_id}/delivery_report",
    "batches/{batch_id}/delivery_report/{recipient}",
    "delivery_reports",
    "groups",
    "groups/{group_id}",
    "groups/{group_id}/members",
    "inbounds",
    "inbounds/{inbound_id}",
)
#: Every value the `endpoint` label can take.
ENDPOINT_LABELS: frozenset[str] = frozenset((*ENDPOINT_TEMPLATES, OTHER))

# --- region ----------------------------------------------------------------------------------
#: Regions Sinch serves the SMS API from; always kept.
KNOWN_REGIONS: frozenset[str] = frozenset(("us", "eu", "au", "br", "ca"))
#: Cap on distinct regions (forward mode derives them from host names).
REGION_CAP = 16

# --- le of sinch_sms_request_duration_seconds, and the code cap ----------------------------
#: Latency buckets (seconds: the histogram's `le` values) for an HTTPS API that usually answers in 50-500 ms: dense
#: between 25 ms and 1 s where the SLO decisions are made, sparse tails to 30 s for timeouts.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


#: Default cap on distinct codes outside the catalog (Sinch adds codes over time).
DEFAULT_CODE_CAP = 50

# --- status_class of sinch_sms_request_duration_seconds ------------------------------------
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def status_class(status: int) -> str:
    """403 → '4xx'; a status outside 100-599 → OTHER."""
    return _STATUS_CLASSES.get(status // 100, OTHER)


# --- callbacks: sinch_sms_callbacks_total, sinch_sms_delivery_reports_total ------------------
#: Batch delivery reports (one per batch, `statuses` entries with a `count`).
BATCH_REPORT_TYPES: tuple[str, ...] = ("delivery_report_sms", "delivery_report_mms")
#: Recipient delivery reports (one message each).
RECIPIENT_REPORT_TYPES: tuple[str, ...] = ("recipient_delivery_report_sms", "recipient_delivery_report_mms")
#: Inbound (MO) messages.
INBOUND_TYPES: tuple[str, ...] = ("mo_text", "mo_binary", "mo_media")
#: Every `type` Sinch calls back with; another string type is OTHER.
CALLBACK_TYPES: tuple[str, ...] = (*BATCH_REPORT_TYPES, *RECIPIENT_REPORT_TYPES, *INBOUND_TYPES)
#: `type=""`: no JSON object with a string `type` (no body, not JSON, over the size limit).
NO_TYPE = ""
#: Every value the `type` label can take.
CALLBACK_TYPE_LABELS: frozenset[str] = frozenset((*CALLBACK_TYPES, OTHER, NO_TYPE))

#: Delivery statuses that may still change (only `per_recipient` reports carry them).
INTERMEDIATE_DELIVERY_STATUSES: tuple[str, ...] = ("queued", "dispatched")
#: Delivery statuses that end a message's life.
FINAL_DELIVERY_STATUSES: tuple[str, ...] = (
    "aborted", "cancelled", "rejected", "deleted", "delivered", "failed", "expired", "unknown",
)  # fmt: skip
#: Every delivery status, lowercased as in the `status` label (Sinch sends "Delivered").
DELIVERY_STATUSES: tuple[str, ...] = (*INTERMEDIATE_DELIVERY_STATUSES, *FINAL_DELIVERY_STATUSES)
#: Final statuses that mean the message did not reach the handset (the failure-rate alert's
#: numerator; `unknown` is not among them: delivered to the operator, receipt missing).
FAILED_DELIVERY_STATUSES: tuple[str, ...] = ("aborted", "rejected", "deleted", "failed", "expired")
#: Every value the delivery `status` label can take (OTHER: a status Sinch added or garbage).
DELIVERY_STATUS_LABELS: frozenset[str] = frozenset((*DELIVERY_STATUSES, OTHER))

#: Delivery codes always kept: 0 (SMPP "no error") and Sinch's own 400-408, 410-418.
KNOWN_DELIVERY_CODES: tuple[str, ...] = ("0", *(str(c) for c in range(400, 409)), *(str(c) for c in range(410, 419)))
#: `code=""` of a delivery report: missing or not an integer.
NO_DELIVERY_CODE = ""
#: Default cap on distinct delivery codes outside KNOWN_DELIVERY_CODES (SMPP and MMS codes).
DEFAULT_DELIVERY_CODE_CAP = 50
#: Integers a delivery code can be; others (negative, huge) are OTHER without using the cap.
DELIVERY_CODE_MAX = 2**31 - 1
