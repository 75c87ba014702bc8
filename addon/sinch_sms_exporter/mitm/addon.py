"""The mitmproxy addon: options, configure, and thin hooks (classify, then record).

Loaded by `sinch-sms-proxy` (master.py) or by plain mitmproxy (README):
    mitmdump -q -s "$(sinch-sms-proxy --print-addon-path)" --listen-host 127.0.0.1 \\
             --mode reverse:https://us.sms.api.sinch.com

Hooks never raise on upstream data and never change what passes through: the only thing
set on a flow is how its response body is carried (buffered or streamed), never its bytes.

/healthz reports the proxy, not just the metrics thread: `health()` asks the event loop
whether every proxy listener runs (`proxy_listener_problems`). A metrics port that cannot be
opened at startup is an error-level log: mitmproxy's errorcheck addon (in mitmdump and in
sinch-sms-proxy) then ends the process, since a sidecar without /metrics is useless.

Shutdown (lifecycle.py): `done` on the way out returns the drain for mitmproxy to await, so
calls in flight finish and the last counts get scraped before the process goes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import re
from collections.abc import Awaitable
from typing import Any

import mitmproxy
from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode
from mitmproxy.utils import human

from sinch_sms_exporter import __version__, settings
from sinch_sms_exporter.classify import responses, routes
from sinch_sms_exporter.classify.upstream_errors import upstream_error_reason
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.exposition import MetricsServer, WebConfig
from sinch_sms_exporter.metrics import Metrics
from sinch_sms_exporter.mitm import answers, logredact
from sinch_sms_exporter.mitm.lifecycle import Lifecycle
from sinch_sms_exporter.mitm.timeouts import UpstreamDeadline
from sinch_sms_exporter.mitm.upstream_log import UpstreamFailureLog

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = settings.DEFAULT_METRICS_PORT
DEFAULT_UPSTREAM_TIMEOUT = settings.DEFAULT_UPSTREAM_TIMEOUT
#: Seconds /healthz waits for the proxy's event loop to run its check: a loop that cannot run
#: one callback in that time is wedged (a blocking hook), not busy. Below the probes' timeouts
#: (Kubernetes example: 2 s, the image's HEALTHCHECK: 4 s).
HEALTH_TIMEOUT = 1.0


def checked_option(name: str, value: Any) -> Any:
    """A sinch_* option's value as the code uses it (seconds, buckets, a pattern, a web
    config), by its row's check; else ValueError with the one line `name=value: reason` (for
    a list: the bad item). The web config's contents are checked here, not in the table:
    reading them needs the exposition module."""
    setting = settings.OPTIONS[name]
    used = []
    for item in value if setting.repeated else [value]:
        try:
            used.append(setting.check(item))
        except ValueError as exc:
            raise ValueError(settings.message(name, item, str(exc))) from None
    if name == "sinch_metrics_web_config":
        try:
            return WebConfig.load(used[0])
        except (ValueError, OSError) as exc:  # a YAML error spans lines: one line here
            raise ValueError(settings.message(name, value, " ".join(str(exc).split()))) from None
    return used if setting.repeated else used[0]


def _deferred_problem(name: str, value: Any) -> str | None:
    """What is wrong with a value mitmproxy holds for an option not declared yet: text from
    `--set` (a list of strings, converted here as mitmproxy will) or a value from config.yaml."""
    setting = settings.OPTIONS[name]
    texts = getattr(value, "val", None)  # mitmproxy's _UnconvertedStrings
    try:
        if texts is None or setting.repeated:
            checked_option(name, value if texts is None else list(texts))
        elif len(texts) != 1:
            if texts or setting.kind != settings.OptionalStr:  # `--set name` alone: None
                return settings.message(name, " ".join(texts), "needs exactly one value")
        else:
            try:
                converted = setting.convert(texts[0])
            except ValueError as exc:
                return settings.message(name, texts[0], str(exc))
            checked_option(name, converted)
    except ValueError as exc:
        return str(exc)
    return None


def _option(name: str) -> Any:
    """checked_option for configure: a bad value is an OptionsError (mitmproxy then keeps
    the previous value)."""
    try:
        return checked_option(name, getattr(ctx.options, name))
    except ValueError as exc:
        raise exceptions.OptionsError(str(exc)) from None


def _listener_problem(instance: Any) -> str:
    """One line on a proxy listener (a mitmproxy ServerInstance) that is not running. Only its
    address and errno: the mode spec (upstream URL) stays out of an unauthenticated page."""
    mode = instance.mode
    port = mode.listen_port(ctx.options.listen_port)
    where = human.format_address((mode.listen_host(ctx.options.listen_host) or "0.0.0.0", port or 0))
    exc = instance.last_exception
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"proxy port {where} is already in use"
    if isinstance(exc, OSError) and exc.errno:
        return f"proxy listener {where} cannot listen: {os.strerror(exc.errno)}"
    if exc is not None:
        return f"proxy listener {where} failed to start ({type(exc).__name__})"
    return f"proxy listener {where} is not running"


def proxy_listener_problems() -> list[str]:
    """Why mitmproxy's proxy server does not serve, one line per problem; [] when every
    configured listener runs. Reads mitmproxy's Proxyserver addon (`servers`, each instance's
    `is_running` and `last_exception`: the same on mitmproxy 11 and 12). Call it on the event
    loop: the listeners change there."""
    proxyserver = ctx.master.addons.get("proxyserver")
    if proxyserver is None:
        return ["no proxy server is loaded"]
    if not ctx.options.server:
        return ["the proxy server is off (server=false)"]
    instances = list(proxyserver.servers)
    if not instances:
        return ["no proxy listener is configured (mode)"]
    return [_listener_problem(instance) for instance in instances if not instance.is_running]


class SinchSmsExporter:
    """Counts every Sinch SMS API answer by status and code; serves them on /metrics."""

    def __init__(self) -> None:
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self.deadline = UpstreamDeadline(DEFAULT_UPSTREAM_TIMEOUT)
        self.failures = UpstreamFailureLog(logger)
        self._body_limit = settings.DEFAULT_BODY_LIMIT
        self.lifecycle = Lifecycle(settings.DEFAULT_SHUTDOWN_GRACE)
        self._configured_regions: dict[str, str] = {}
        self._region_cache: dict[tuple[str, int], str] = {}
        self._counted_hosts: re.Pattern[str] = routes.SINCH_HOST_RE
        self._web_config: WebConfig | None = None
        self._running = False
        #: a bad or unknown sinch_* value was refused at load: startup ends, serve no /metrics
        self._refused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.health_timeout = HEALTH_TIMEOUT

    # --- options -------------------------------------------------------------------------

    def load(self, loader: mitmproxy.addonmanager.Loader) -> None:
        # mitmproxy quotes raw traffic bytes in some log messages: redact them in every log
        # handler there is (sinch-sms-proxy's terminal log, and mitmdump's when loaded with -s).
        logredact.install()
        # A failed upstream: the client gets one plain line with the reason, not an HTML page.
        answers.install()
        self._check_deferred(loader.master.options)
        for name, setting in settings.OPTIONS.items():
            loader.add_option(name, setting.kind, setting.default, setting.help)

    def _check_deferred(self, options: mitmproxy.optmanager.OptManager) -> None:
        """Check the sinch_* values mitmdump holds back until an addon declares them.

        `mitmdump -s … --set sinch_code_cap=abc` keeps the text aside (`deferred`) and converts
        it when `load` has declared the option, right after this. A text mitmproxy cannot
        convert would raise there, out of the script loader, and the script would be left
        half-loaded with no word; a value configure refuses would end as a traceback. Instead,
        each bad value (and each sinch_* name no row declares) is one error line here, and is
        dropped: mitmproxy's errorcheck then ends the startup with status 1."""
        deferred: dict[str, Any] = getattr(options, "deferred", {})
        for name in sorted(k for k in deferred if k.startswith("sinch_")):
            if name not in settings.OPTIONS:
                close = settings.closest(name, settings.OPTIONS, "sinch_")
                hint = f" (did you mean {close}?)" if close else ""
                logger.error(f"unknown option {name}{hint}")
                self._refused = True
                del deferred[name]
                continue
            problem = _deferred_problem(name, deferred[name])
            if problem:
                logger.error(problem)
                self._refused = True
                del deferred[name]

    def configure(self, updated: set[str]) -> None:
        body_limit = _option("sinch_body_limit")
        code_cap = _option("sinch_code_cap")
        _option("sinch_metrics_port")
        upstream_timeout = _option("sinch_upstream_timeout")
        shutdown_grace = _option("sinch_shutdown_grace")
        buckets = _option("sinch_latency_buckets")
        regions = dict(_option("sinch_regions"))
        counted_hosts = _option("sinch_hosts")
        web_config = _option("sinch_metrics_web_config")

        self._body_limit = body_limit
        self._configured_regions = regions
        self._region_cache.clear()
        self._counted_hosts = counted_hosts
        self.deadline.timeout = upstream_timeout
        self.lifecycle.grace = shutdown_grace
        if self.metrics is None or updated & {"sinch_latency_buckets", "sinch_code_cap", "sinch_regions"}:
            self.metrics = Metrics(
                buckets=buckets,
                code_cap=code_cap,
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
        """/healthz, from the metrics server's thread: None when the event loop answers and
        every proxy listener runs and it is not shutting down; else why not (one line,
        nothing secret)."""
        draining = self.lifecycle.health(self.metrics)
        if draining is not None:
            return draining
        loop = self._loop
        if loop is None:
            return "the proxy is not running"
        future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()

        def check() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(proxy_listener_problems())
                except Exception as exc:  # noqa: BLE001 - reported by /healthz
                    future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(check)
        except RuntimeError:  # the loop is closed
            return "the proxy has stopped"
        try:
            problems = future.result(timeout=self.health_timeout)
        except TimeoutError:
            future.cancel()
            return f"the proxy's event loop did not answer within {self.health_timeout:g} s"
        return "; ".join(problems) or None

    # --- hooks: thin, never raise on upstream data ---------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        self.lifecycle.started(flow)  # every flow, counted or not: shutdown lets it finish
        if self._counted(flow):
            self.deadline.track(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.deadline.answered(flow)
        response = flow.response
        if response is not None and not response.stream and self._counted(flow):
            response.stream = responses.stream_for(response, self._body_limit)

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            self._count_response(flow)
        finally:
            self.lifecycle.ended(flow)  # after the count: the drain then waits for its scrape

    def _count_response(self, flow: http.HTTPFlow) -> None:
        if self.metrics is None or not self._counted(flow):
            return
        try:
            outcome = responses.classify(flow, self._region(flow), self._body_limit)
        except Exception:
            logger.exception("sinch-sms-exporter: cannot classify an answer (not counted)")
            return
        self.metrics.record_response(outcome)

    def error(self, flow: http.HTTPFlow) -> None:
        timed_out = self.deadline.pop_expired(flow)
        try:
            self._count_error(flow, timed_out)
        finally:
            self.lifecycle.ended(flow)

    def _count_error(self, flow: http.HTTPFlow, timed_out: bool) -> None:
        reason = labels.REASON_TIMEOUT if timed_out else upstream_error_reason(flow)
        if reason is not None:
            answers.note(flow.client_conn.id, reason)
        if self.metrics is None or not self._counted(flow):
            return
        region = self._region(flow)
        endpoint = routes.endpoint_of(flow.request.path)
        method = routes.method_label(flow.request.method)
        if reason is None:
            self.metrics.record_client_abort(region, endpoint, method)
        else:
            self.metrics.record_upstream_error(region, endpoint, method, reason)
            self.failures.failed(reason, flow.request.host, flow.request.port, region)

    def client_disconnected(self, client: mitmproxy.connection.Client) -> None:
        answers.forget(client.id)

    # --- helpers -------------------------------------------------------------------------

    def _counted(self, flow: http.HTTPFlow) -> bool:
        """Reverse-mode flows always count; forward-mode flows only for Sinch hosts."""
        if isinstance(flow.client_conn.proxy_mode, ReverseMode):
            return True
        return self._counted_hosts.fullmatch(flow.request.pretty_host) is not None

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
