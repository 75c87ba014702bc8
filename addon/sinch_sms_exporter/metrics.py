"""Metric definitions on one private registry, and the cardinality guards.

Records Outcomes; knows nothing of mitmproxy flows. The registry is private to each
Metrics instance (never prometheus_client's global REGISTRY): mitmproxy re-imports a `-s`
script on reload, and the global registry would then raise "Duplicated timeseries".

Hot path: `record_response` is one dict lookup on a tuple key plus a counter increment
and a histogram observation on cached label children (and an int increment: `recorded`).

`recorded` and `scraped` let shutdown wait until the last counts were scraped: each record_*
adds one to `recorded` (on the event loop); the exposition sets `scraped` to the value
`recorded` had when a scrape that was then served whole began (on its own thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.labels import (
    DEFAULT_BUCKETS,
    DEFAULT_CODE_CAP,
    DEFAULT_DELIVERY_CODE_CAP,
    KNOWN_DELIVERY_CODES,
    KNOWN_REGIONS,
    NO_CODE,
    NO_DELIVERY_CODE,
    OTHER,
    REGION_CAP,
    UPSTREAM_ERROR_REASONS,
    status_class,
)
from sinch_sms_exporter.contract.outcomes import CallbackOutcome, Outcome


class BoundedLabel:
    """Keeps label values from an open set bounded: `keep` values always pass, up to `cap`
    further distinct values pass verbatim, everything after that becomes `other`."""

    def __init__(self, name: str, keep: Iterable[str], cap: int) -> None:
        self.name = name
        self.keep = frozenset(keep)
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.keep or value in self.seen:
            return value
        if len(self.seen) < self.cap:
            self.seen.add(value)
            return value
        return OTHER


class Metrics:
    """Every metric of the contract, defined once, on one registry."""

    def __init__(
        self,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        code_cap: int = DEFAULT_CODE_CAP,
        delivery_code_cap: int = DEFAULT_DELIVERY_CODE_CAP,
        regions: Iterable[str] = (),
        version: str = "unknown",
        mitmproxy_version: str = "unknown",
    ) -> None:
        # `_created` series double the exposition and nothing here reads them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        route = ("region", "endpoint", "method")
        self.responses = Counter(
            "sinch_sms_responses",
            'Answers of the Sinch SMS API by HTTP status and JSON error code (code="" when the answer carried none).',
            (*route, "status", "code"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "sinch_sms_request_duration_seconds",
            "Time from the request reaching the proxy to the end of the upstream answer.",
            (*route, "status_class"),
            buckets=tuple(buckets),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "sinch_sms_upstream_errors",
            "Requests that got no complete answer from the Sinch SMS API, by reason; the client got a 502 instead.",
            (*route, "reason"),
            registry=self.registry,
        )
        self.client_aborts = Counter(
            "sinch_sms_client_aborts",
            "Requests the client abandoned (disconnected) before the upstream answered.",
            route,
            registry=self.registry,
        )
        self.label_overflow = Counter(
            "sinch_sms_exporter_label_overflow",
            "Label values replaced by 'other' because their label reached its cap of distinct values.",
            ("label",),
            registry=self.registry,
        )
        self.callbacks = Counter(
            "sinch_sms_callbacks",
            "Callbacks Sinch sent through a callback listener, by JSON type and the receiver's HTTP status "
            '(type="" when the body had no string type).',
            ("type", "status"),
            registry=self.registry,
        )
        self.callback_errors = Counter(
            "sinch_sms_callback_errors",
            "Callbacks the receiver did not answer, by reason; Sinch got a 502 (and retries).",
            ("reason",),
            registry=self.registry,
        )
        self.delivery_reports = Counter(
            "sinch_sms_delivery_reports",
            "Messages reported by delivery report callbacks the receiver accepted (2xx), by type, delivery "
            'status and delivery code (code="" when the report carried none).',
            ("type", "status", "code"),
            registry=self.registry,
        )
        build_info = Gauge(
            "sinch_sms_exporter_build_info",
            "Always 1; the labels give the exporter and mitmproxy versions.",
            ("version", "mitmproxy_version"),
            registry=self.registry,
        )
        build_info.labels(version, mitmproxy_version).set(1)
        # The Python version is prometheus_client's python_info, not a third build_info label:
        # the contract fixes build_info's labels, and users' joins on them.
        PlatformCollector(registry=self.registry)
        # process_start_time_seconds tells a restart from a steady counter: the alert rules
        # count a blocked_account answer after a restart even when the reborn counter does
        # not drop below its old value (same instance label, e.g. a compose service).
        ProcessCollector(registry=self.registry)

        self.codes = BoundedLabel("code", (*catalog.CODES, NO_CODE, OTHER), code_cap)
        self.regions = BoundedLabel("region", (*KNOWN_REGIONS, *regions, OTHER), REGION_CAP)
        self.delivery_codes = BoundedLabel(
            "delivery_code", (*KNOWN_DELIVERY_CODES, NO_DELIVERY_CODE, OTHER), delivery_code_cap
        )
        for label in ("code", "region", "delivery_code"):
            self.label_overflow.labels(label)
        for reason in UPSTREAM_ERROR_REASONS:
            self.callback_errors.labels(reason)
        self._response_children: dict[tuple, tuple] = {}
        #: Counts recorded so far (answers, upstream errors, client aborts, callbacks), each
        #: added after its counters moved: a scrape that read `recorded` first shows them all.
        self.recorded = 0
        #: `recorded` as of the start of the last scrape served whole; None: never scraped.
        self.scraped: int | None = None
        self._callback_children: dict[tuple[str, int], Any] = {}
        self._report_children: dict[tuple[str, str, str], Any] = {}

    def _guard(self, guard: BoundedLabel, value: str) -> str:
        bounded = guard(value)
        if bounded != value:
            self.label_overflow.labels(guard.name).inc()
        return bounded

    def record_response(self, outcome: Outcome) -> None:
        """Count one upstream answer and observe its latency."""
        children = self._response_children.get(outcome[:5])
        if children is None:
            children = self._children_for(outcome)
        counter, histogram = children
        counter.inc()
        histogram.observe(outcome.duration)
        self.recorded += 1

    def _children_for(self, outcome: Outcome) -> tuple:
        """Label children for a (region, endpoint, method, status, code) not yet cached.

        Guards run here, once per new key. A key is cached only when the guards let its
        values through unchanged, so the cache is as bounded as the labels themselves: a
        novel code past the cap is guarded (and counted as overflow) on every answer.
        """
        region = self._guard(self.regions, outcome.region)
        code = self._guard(self.codes, outcome.code)
        route = (region, outcome.endpoint, outcome.method)
        children = (
            self.responses.labels(*route, str(outcome.status), code),
            self.duration.labels(*route, status_class(outcome.status)),
        )
        if region == outcome.region and code == outcome.code:
            self._response_children[outcome[:5]] = children
        return children

    def record_upstream_error(self, region: str, endpoint: str, method: str, reason: str) -> None:
        if reason not in UPSTREAM_ERROR_REASONS:
            reason = OTHER
        self.upstream_errors.labels(self._guard(self.regions, region), endpoint, method, reason).inc()
        self.recorded += 1

    def record_client_abort(self, region: str, endpoint: str, method: str) -> None:
        self.client_aborts.labels(self._guard(self.regions, region), endpoint, method).inc()
        self.recorded += 1

    def record_callback(self, outcome: CallbackOutcome, status: int) -> None:
        """Count one callback the receiver answered with `status`; its delivery reports only
        on a 2xx: Sinch retries one answered 5xx or 429 (it would count twice) and drops one
        answered another 4xx (the service never got it)."""
        key = (outcome.type, status)
        child = self._callback_children.get(key)
        if child is None:
            child = self._callback_children[key] = self.callbacks.labels(outcome.type, str(status))
        child.inc()
        if 200 <= status < 300:
            for report in outcome.reports:
                self._report_child(outcome.type, report[0], report[1]).inc(report[2])
        self.recorded += 1

    def _report_child(self, kind: str, status: str, code: str) -> Any:
        key = (kind, status, code)
        child = self._report_children.get(key)
        if child is None:
            bounded = self._guard(self.delivery_codes, code)
            child = self.delivery_reports.labels(kind, status, bounded)
            if bounded == code:  # cached only when unchanged: the cache stays as bounded as the label
                self._report_children[key] = child
        return child

    def record_callback_error(self, reason: str) -> None:
        """A callback the receiver did not answer (Sinch got a 502)."""
        if reason not in UPSTREAM_ERROR_REASONS:
            reason = OTHER
        self.callback_errors.labels(reason).inc()
        self.recorded += 1
