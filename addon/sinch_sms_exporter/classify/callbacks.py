"""A callback Sinch sent to the service's receiver → CallbackOutcome (type, delivery reports).

The rules (docs/architecture.md, "Contracts"; the README's "Callbacks" section):
- the body is read after content-decoding, up to the body limit, whatever the Content-Type;
- `type`: one of the seven Sinch types, another string `other`, anything else `""`;
- delivery reports: a recipient report is one message with its `status` and `code`; a batch
  report is `count` messages per `statuses` entry; status lowercased into the ten known ones
  (else `other`), code an integer as a decimal string (else `""`).

Only reads: the body that reaches the receiver is never touched (Sinch signs its raw bytes).
Never raises on what arrives; knows nothing of Prometheus or of phone numbers (it never
looks at `recipient`, `batch_id` or `client_reference`).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from sinch_sms_exporter.classify import decoding
from sinch_sms_exporter.contract.labels import (
    BATCH_REPORT_TYPES,
    CALLBACK_TYPES,
    DELIVERY_CODE_MAX,
    DELIVERY_STATUSES,
    NO_DELIVERY_CODE,
    NO_TYPE,
    OTHER,
    RECIPIENT_REPORT_TYPES,
)
from sinch_sms_exporter.contract.outcomes import CallbackOutcome

_TYPES = frozenset(CALLBACK_TYPES)
_BATCH = frozenset(BATCH_REPORT_TYPES)
_RECIPIENT = frozenset(RECIPIENT_REPORT_TYPES)
#: Wire spelling ("Delivered", "DELIVERED", …) → label; built once, looked up per report.
_STATUS_OF = {s: s for s in DELIVERY_STATUSES} | {s.capitalize(): s for s in DELIVERY_STATUSES}
#: A batch report lists one entry per (status, code) present: a few dozen at most. A body with
#: more is not Sinch's; its entries past this many are not read (bounded work per callback).
MAX_STATUS_ENTRIES = 256
#: The most messages one status entry may claim (a batch holds at most a few hundred thousand
#: recipients); a larger `count` is not a report: counting it would overflow the counter.
MAX_COUNT = 2**31 - 1
#: CallbackOutcome of a callback whose body says nothing (over the limit, not JSON, …).
NOTHING = CallbackOutcome(NO_TYPE)


def delivery_status(value: Any) -> str:
    """'Delivered' → 'delivered'; another string or a non-string → OTHER."""
    if not isinstance(value, str):
        return OTHER
    status = _STATUS_OF.get(value)
    if status is None:
        lowered = value.lower()
        status = lowered if lowered in _STATUS_OF else OTHER
    return status


def delivery_code(value: Any) -> str:
    """412 → '412'; an integer outside 0…2³¹-1 → OTHER; a non-integer (bool, float, string) → ''."""
    if type(value) is not int:
        return NO_DELIVERY_CODE
    if not 0 <= value <= DELIVERY_CODE_MAX:
        return OTHER
    return str(value)


def _document(body: bytes) -> Any:
    """The parsed JSON document, or None when the body is not JSON (never raises)."""
    try:
        if b"\x00" in body or body.startswith(codecs.BOM_UTF8):
            return json.loads(body)  # UTF-16/32 or a BOM: json detects which
        return json.loads(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):  # not JSON or not UTF-8/16/32, nested too deep, huge int
        return None


def _batch_reports(statuses: Any) -> tuple[tuple[str, str, int], ...]:
    if not isinstance(statuses, list):
        return ()
    totals: dict[tuple[str, str], int] = {}
    for entry in statuses[:MAX_STATUS_ENTRIES]:
        if not isinstance(entry, dict):
            continue
        count = entry.get("count")
        if type(count) is not int or not 0 < count <= MAX_COUNT:
            continue  # an entry without a (sane) number of messages counts none
        key = (delivery_status(entry.get("status")), delivery_code(entry.get("code")))
        totals[key] = totals.get(key, 0) + count
    return tuple((status, code, count) for (status, code), count in totals.items())


def classify_document(document: Any) -> CallbackOutcome:
    """The outcome of a parsed callback body."""
    if not isinstance(document, dict):
        return NOTHING
    kind = document.get("type")
    if not isinstance(kind, str):
        return NOTHING
    if kind in _RECIPIENT:
        report = (delivery_status(document.get("status")), delivery_code(document.get("code")), 1)
        return CallbackOutcome(kind, (report,))
    if kind in _BATCH:
        return CallbackOutcome(kind, _batch_reports(document.get("statuses")))
    return CallbackOutcome(kind if kind in _TYPES else OTHER)


def classify_body(raw: bytes | None, content_encoding: str, limit: int) -> CallbackOutcome:
    """The outcome of a callback's raw (still encoded) body (None or empty: no body)."""
    if not raw:
        return NOTHING
    try:
        body = decoding.decode(raw, content_encoding, limit)
    except (decoding.TooLarge, decoding.Undecodable):
        return NOTHING
    if b'"type"' not in body and b"\\" not in body and b"\x00" not in body:
        return NOTHING  # no way to spell a "type" key: skip the parse
    return classify_document(_document(body))
