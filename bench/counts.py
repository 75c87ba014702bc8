"""What a loaded sinch-sms-proxy counted: its /metrics, read with prometheus_client's parser.

The benchmark scrapes before and after each run through sinch-sms-proxy and compares the
increase with hey's status code distribution (results.count_problems): a proxy that is fast
because it dropped counts would otherwise look like a win.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

FAILURES = ("sinch_sms_upstream_errors_total", "sinch_sms_client_aborts_total")


@dataclass
class Counts:
    """sinch_sms_responses_total by (status, code), summed over the other labels; upstream
    errors and client aborts together."""

    responses: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.responses.values())


def parse(text: str) -> Counts:
    counts = Counts()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sinch_sms_responses_total":
                key = (sample.labels["status"], sample.labels["code"])
                counts.responses[key] = counts.responses.get(key, 0.0) + sample.value
            elif sample.name in FAILURES:
                counts.failures += sample.value
    return counts


def read(metrics_port: int, timeout: float = 10.0) -> Counts:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=timeout) as response:
        return parse(response.read().decode())
