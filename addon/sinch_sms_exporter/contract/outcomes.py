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
