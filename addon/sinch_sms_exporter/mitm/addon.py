"""The mitmproxy addon: options from the settings table, configure, and thin hooks (classify,
then record).

Loaded by `sinch-sms-proxy` (master.py) or by plain mitmproxy (README):
    mitmdump -q -s "$(sinch-sms-proxy --print-addon-path)" --listen-host 127.0.0.1 \\
             --mode reverse:https://us.sms.api.sinch.com

Two kinds of flows are counted: API flows (the service → Sinch; `classify.responses`) and
callbacks (Sinch → the service's receiver, on a callback listener; `classify.callbacks`).
Hooks never raise on upstream data and never change what passes through: the only thing set
on a flow is how its response body is carried (buffered or streamed), never its bytes.

A metrics port that cannot be opened at startup is an error-level log: mitmproxy's errorcheck
addon (in mitmdump and in sinch-sms-proxy) then ends the process, since a sidecar without
/metrics is useless. /healthz asks the event loop whether every listener runs (health.py).
Shutdown (lifecycle.py): `done` on the way out returns the drain for mitmproxy to await, so
calls in flight finish and the last counts get scraped before the process goes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from collections.abc import Awaitable
from enum import IntEnum

import mitmproxy
from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode
from mitmproxy.utils import human

from sinch_sms_exporter import __version__, settings
from sinch_sms_exporter.classify import callbacks, responses, routes
from sinch_sms_exporter.classify.upstream_errors import upstream_error_reason
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.exposition import MetricsServer, WebConfig
from sinch_sms_exporter.metrics import Metrics
from sinch_sms_exporter.mitm import answers, callback_listeners, health, logredact
from sinch_sms_exporter.mitm.lifecycle import Lifecycle
from sinch_sms_exporter.mitm.options import option, refuse_deferred
from sinch_sms_exporter.mitm.timeouts import UpstreamDeadline
from sinch_sms_exporter.mitm.upstream_log import UpstreamFailureLog

logger = logging.getLogger(__name__)


class Role(IntEnum):
    """What a flow is to the exporter (falsy: not counted)."""

    IGNORED = 0  # forward mode, a host that is not Sinch's (tunnelled, not decrypted)
    API = 1  # the service calling the Sinch SMS API
    CALLBACK = 2  # Sinch calling the service's receiver, on a callback listener


class SinchSmsExporter:
    """Counts every Sinch SMS API answer by status and code, and every callback by type and
    delivery status; serves them on /metrics."""

    def __init__(self) -> None:
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self.deadline = UpstreamDeadline(settings.DEFAULT_UPSTREAM_TIMEOUT)
        self.failures = UpstreamFailureLog(logger)
        self.callback_failures = UpstreamFailureLog(
            logger, what="callback receiver failure", metric="sinch_sms_callback_errors_total"
        )
        self.lifecycle = Lifecycle(settings.DEFAULT_SHUTDOWN_GRACE)
        self._body_limit = settings.DEFAULT_BODY_LIMIT
        self._configured_regions: dict[str, str] = {}
        self._region_cache: dict[tuple[str, int], str] = {}
        self._counted_hosts: re.Pattern[str] = routes.SINCH_HOST_RE
        #: Mode specs of the callback listeners: their flows are callbacks.
        self.callback_modes: frozenset[str] = frozenset()
        #: listener setups under way (asyncio keeps only weak references to tasks)
        self._listener_setups: set[asyncio.Task[bool]] = set()
        self._web_config: WebConfig | None = None
        self._running = False
        #: a bad or unknown sinch_* value was refused at load: startup ends, serve no /metrics
        self._refused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.health_timeout = health.HEALTH_TIMEOUT

    # --- options -------------------------------------------------------------------------

    def load(self, loader: mitmproxy.addonmanager.Loader) -> None:
        # mitmproxy quotes raw traffic bytes in some log messages: redact them in every log
        # handler there is (sinch-sms-proxy's terminal log, and mitmdump's when loaded with -s).
        logredact.install()
        # A failed upstream: the client gets one plain line with the reason, not an HTML page.
        answers.install()
        self._refused = refuse_deferred(loader.master.options, logger) or self._refused
        for name, setting in settings.OPTIONS.items():
            loader.add_option(name, setting.kind, setting.default, setting.help)

    def configure(self, updated: set[str]) -> None:
        body_limit = option("sinch_body_limit")
        code_cap = option("sinch_code_cap")
        delivery_code_cap = option("sinch_delivery_code_cap")
        option("sinch_metrics_port")
        upstream_timeout = option("sinch_upstream_timeout")
        shutdown_grace = option("sinch_shutdown_grace")
        buckets = option("sinch_latency_buckets")
        regions = dict(option("sinch_regions"))
        counted_hosts = option("sinch_hosts")
        web_config = option("sinch_metrics_web_config")
        try:
            listeners = settings.distinct_listen_ports(option("sinch_callback_upstreams"))
        except ValueError as exc:
            raise exceptions.OptionsError(f"sinch_callback_upstreams: {exc}") from None
        callback_modes = [listener.mode for listener in listeners]

        self._body_limit = body_limit
        self._configured_regions = regions
        self._region_cache.clear()
        self._counted_hosts = counted_hosts
        self.callback_modes = frozenset(callback_modes)
        self.deadline.timeout = upstream_timeout
        self.lifecycle.grace = shutdown_grace
        if self.metrics is None or updated & {
            "sinch_latency_buckets", "sinch_code_cap", "sinch_delivery_code_cap", "sinch_regions"
        }:  # fmt: skip
            self.metrics = Metrics(
                buckets=buckets,
                code_cap=code_cap,
                delivery_code_cap=delivery_code_cap,
                regions=regions.values(),
                version=__version__,
                mitmproxy_version=mitmproxy.version.VERSION,
            )
        self._web_config = web_config
        if self._running and (
            self.server is None
            or updated & {"sinch_metrics_host", "sinch_metrics_port", "sinch_metrics_web_config"}
            or self.server.registry is not self.metrics.registry
        ):
            self._restart_server()
        missing = callback_listeners.missing_modes(callback_modes)
        if missing:
            # One option is the whole setup for `mitmdump -s` users too: the listener is added
            # here. Triggers a nested configure.
            ctx.options.update(mode=[*ctx.options.mode, *missing])
        self._start_callback_listeners()

    def _start_callback_listeners(self) -> None:
        task = callback_listeners.start_missing(self.callback_modes, self._loop)
        if task is not None:
            self._listener_setups.add(task)
            task.add_done_callback(self._listener_setups.discard)

    # --- lifecycle -----------------------------------------------------------------------

    def running(self) -> None:
        self._running = True
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # mitmproxy's test harness calls hooks outside a loop
            self._loop = None
        logredact.install()  # handlers added since load
        self.deadline.start()
        self._restart_server()
        self._start_callback_listeners()

    def done(self) -> Awaitable[None] | None:
        """On the way out (mitmproxy's exit flag is set), the drain, which mitmproxy awaits
        with its listeners still running; then stop. A plain def returning an awaitable, not
        an `async def`: mitmproxy calls `done` synchronously when a script is reloaded or
        removed, and refuses async handlers there."""
        exiting = getattr(ctx.master, "should_exit", None)
        if self._running and exiting is not None and exiting.is_set():
            return self._drain_then_stop()
        self._stop()
        return None

    async def _drain_then_stop(self) -> None:
        try:
            await self.lifecycle.drain(lambda: self.metrics)
        finally:
            self._stop()

    def _stop(self) -> None:
        self._running = False
        self._loop = None
        self.deadline.stop()
        self.failures.close()
        self.callback_failures.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _restart_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        port = ctx.options.sinch_metrics_port
        if port and self.metrics is not None and not self._refused:
            host = ctx.options.sinch_metrics_host
            try:
                self.server = MetricsServer.start(
                    self.metrics.registry, host, port, self._web_config, self.health, self.metrics
                )
            except OSError as exc:
                # Error level on purpose: during startup mitmproxy's errorcheck addon turns it
                # into exit status 1 (mitmdump -s as much as sinch-sms-proxy). A sidecar that
                # proxies but serves no /metrics would look healthy and count for nobody.
                why = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
                address = human.format_address((host, port))
                logger.error(f"cannot serve /metrics on {address}: {why} (option sinch_metrics_port)")
                return
            logger.info(f"metrics on {self.server.url}")

    def health(self) -> str | None:
        """/healthz, from the metrics server's thread: None when the proxy is not shutting
        down, its event loop answers and every listener runs; else why not (one line,
        nothing secret)."""
        return self.lifecycle.health(self.metrics) or health.probe(self._loop, self.health_timeout)

    # --- hooks: thin, never raise on upstream data ---------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        callback_listeners.admit_public_sender(client, self.callback_modes)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # In flight from its headers on (a body may still be uploading), counted or not:
        # shutdown lets every call finish.
        self.lifecycle.started(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if self._role(flow):
            self.deadline.track(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.deadline.answered(flow)
        response = flow.response
        if response is None or response.stream:
            return
        role = self._role(flow)
        if role is Role.API:
            response.stream = responses.stream_for(response, self._body_limit)
        elif role is Role.CALLBACK:
            # The receiver's answer is never parsed: buffered when small, else streamed.
            length = responses.content_length(response)
            response.stream = length is None or length > self._body_limit

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            self._count_response(flow)
        finally:
            self.lifecycle.ended(flow)  # after the count: the drain then waits for its scrape

    def _count_response(self, flow: http.HTTPFlow) -> None:
        role = self._role(flow)
        if self.metrics is None or not role:
            return
        try:
            if role is Role.CALLBACK:
                request = flow.request
                encoding = responses.header(request, b"content-encoding") or ""
                outcome = callbacks.classify_body(request.raw_content, encoding, self._body_limit)
                self.metrics.record_callback(outcome, flow.response.status_code)  # type: ignore[union-attr]
            else:
                self.metrics.record_response(responses.classify(flow, self._region(flow), self._body_limit))
        except Exception:
            logger.exception("sinch-sms-exporter: cannot count an answer")

    def error(self, flow: http.HTTPFlow) -> None:
        timed_out = self.deadline.pop_expired(flow)
        try:
            self._count_error(flow, timed_out)
        finally:
            self.lifecycle.ended(flow)

    def _count_error(self, flow: http.HTTPFlow, timed_out: bool) -> None:
        role = self._role(flow)
        if not role:
            return  # not ours: mitmproxy's own answer, uncounted
        reason = labels.REASON_TIMEOUT if timed_out else upstream_error_reason(flow)
        if reason is not None:
            answers.note(flow.client_conn.id, reason)
        if self.metrics is None:
            return
        if role is Role.CALLBACK:
            if reason is not None:  # None: Sinch hung up first; the receiver is not at fault
                self.metrics.record_callback_error(reason)
                self.callback_failures.failed(reason, flow.request.host, flow.request.port)
            return
        region = self._region(flow)
        endpoint = routes.endpoint_of(flow.request.path)
        method = routes.method_label(flow.request.method)
        if reason is None:
            self.metrics.record_client_abort(region, endpoint, method)
        else:
            self.metrics.record_upstream_error(region, endpoint, method, reason)
            self.failures.failed(reason, flow.request.host, flow.request.port, region)

    def client_disconnected(self, client: connection.Client) -> None:
        answers.forget(client.id)

    # --- helpers -------------------------------------------------------------------------

    def _role(self, flow: http.HTTPFlow) -> Role:
        """CALLBACK for flows of a callback listener; API for other reverse-mode flows and
        forward-mode flows to Sinch hosts; IGNORED for the rest."""
        mode = flow.client_conn.proxy_mode
        if self.callback_modes and mode.full_spec in self.callback_modes:
            return Role.CALLBACK
        if isinstance(mode, ReverseMode):
            return Role.API
        return Role.API if self._counted_hosts.fullmatch(flow.request.pretty_host) is not None else Role.IGNORED

    def _region(self, flow: http.HTTPFlow) -> str:
        key = (flow.request.host, flow.request.port)
        region = self._region_cache.get(key)
        if region is None:
            host = key[0].lower()
            region = (
                self._configured_regions.get(f"{host}:{key[1]}")
                or self._configured_regions.get(host)
                or routes.region_of_host(host)
                or labels.OTHER
            )
            if len(self._region_cache) < 1024:
                self._region_cache[key] = region
        return region
