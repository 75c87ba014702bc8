"""What one answer was, in label terms: the record classification hands to the metrics.

Lives in the contract so that `metrics` (no mitmproxy) and `classify` (no Prometheus) share
it without importing each other.
"""

from __future__ import annotations

from typing import NamedTuple


class Outcome(NamedTuple):
    """One upstream answer, reduced to what the metrics need (a NamedTuple: cheap to make)."""

    region: str
    endpoint: str
    method: str
    status: int
    code: str
    duration: float


class CallbackOutcome(NamedTuple):
    """One callback from Sinch, reduced to what the metrics need.

    `reports` holds (delivery status, delivery code, messages) for delivery reports: one
    entry for a recipient report, one per `statuses` entry of a batch report; () otherwise.
    Status and type are bounded label values; the code is a decimal string still to be
    capped by the metrics (the cap is state, and classification has none).
    """

    type: str
    reports: tuple[tuple[str, str, int], ...] = ()
