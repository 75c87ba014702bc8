"""The mitmproxy addon: options, configure, and thin hooks (classify, then record).

Loaded by `sinch-sms-proxy` (proxy.py) or by plain mitmproxy:
    mitmdump -s "$(sinch-sms-proxy --print-addon-path)" --mode reverse:https://us.sms.api.sinch.com

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Optional, TypeVar

import mitmproxy
from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode
from mitmproxy.utils import human

from sinch_sms_exporter import __version__
from sinch_sms_exporter.classify import responses, routes
from sinch_sms_exporter.classify.upstream_errors import upstream_error_reason
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.exposition import MetricsServer, WebConfig
from sinch_sms_exporter.metrics import DEFAULT_BUCKETS_SPEC, DEFAULT_CODE_CAP, Metrics, parse_buckets
from sinch_sms_exporter.mitm import logredact
from sinch_sms_exporter.mitm.lifecycle import DEFAULT_SHUTDOWN_GRACE, Lifecycle
from sinch_sms_exporter.mitm.timeouts import UpstreamDeadline

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 19880
DEFAULT_UPSTREAM_TIMEOUT = 30.0
#: Seconds /healthz waits for the proxy's event loop to run its check: a loop that cannot run
#: one callback in that time is wedged (a blocking hook), not busy. Below the probes' timeouts
#: (Kubernetes example: 2 s, the image's HEALTHCHECK: 4 s).
HEALTH_TIMEOUT = 1.0
T = TypeVar("T")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def parse_region_map(entries: Sequence[str]) -> dict[str, str]:
    """['eu.example.com=eu', '127.0.0.1:9000=us'] → {host[:port]: region}; ValueError if bad."""
    regions: dict[str, str] = {}
    for entry in entries:
        host, sep, region = entry.rpartition("=")
        if not sep or not host or not _REGION_RE.match(region):
            raise ValueError(
                f"bad sinch_regions entry {entry!r}: expected HOST[:PORT]=REGION, "
                "REGION of lowercase letters, digits, '-' or '_' (at most 32)"
            )
        regions[host.lower()] = region
    return regions


def parse_timeout(text: str) -> float:
    """'2.5' → 2.5 seconds; ValueError unless a finite number ≥ 0 (0: no timeout)."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{text!r}: must be 0 (off) or more seconds")
    return seconds


def _parsed(option: str, parse: Callable[[Any], T], value: Any) -> T:
    """`parse(value)`, its failure an OptionsError that names the option (a bare regex error
    such as "missing ), unterminated subpattern" would not say which setting is wrong)."""
    try:
        return parse(value)
    except (ValueError, re.error, OSError) as exc:
        message = str(exc)
        raise exceptions.OptionsError(message if option in message else f"{option}: {message}") from exc


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
        self.lifecycle = Lifecycle(DEFAULT_SHUTDOWN_GRACE)
        self._body_limit = responses.DEFAULT_BODY_LIMIT
        self._configured_regions: dict[str, str] = {}
        self._region_cache: dict[tuple[str, int], str] = {}
        self._counted_hosts: re.Pattern[str] = routes.SINCH_HOST_RE
        self._web_config: WebConfig | None = None
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.health_timeout = HEALTH_TIMEOUT

    # --- options -------------------------------------------------------------------------

    def load(self, loader: mitmproxy.addonmanager.Loader) -> None:
        # mitmproxy quotes raw traffic bytes in some log messages: redact them in every log
        # handler there is (sinch-sms-proxy's terminal log, and mitmdump's when loaded with -s).
        logredact.install()
        loader.add_option(
            "sinch_metrics_host", str, "0.0.0.0",
            "Address the /metrics endpoint listens on (all interfaces: Prometheus scrapes it "
            "from outside the pod).",
        )  # fmt: skip
        loader.add_option(
            "sinch_metrics_port", int, DEFAULT_METRICS_PORT,
            "Port of the /metrics endpoint (0: do not serve metrics). 19880 is outside the "
            "9100-9999 range that Prometheus exporters have fully allocated.",
        )  # fmt: skip
        loader.add_option(
            "sinch_metrics_web_config", Optional[str], None,  # noqa: UP045 - mitmproxy compares types to Optional[str]
            "Path of a Prometheus exporter-toolkit style web config (tls_server_config, "
            "basic_auth_users with bcrypt hashes) that protects /metrics.",
        )  # fmt: skip
        loader.add_option(
            "sinch_body_limit", int, responses.DEFAULT_BODY_LIMIT,
            "Error bodies larger than this many bytes (encoded or decoded) are not parsed; "
            "they count with code=\"\". Traffic is never affected.",
        )  # fmt: skip
        loader.add_option(
            "sinch_code_cap", int, DEFAULT_CODE_CAP,
            "Distinct error codes outside Sinch's catalog kept verbatim; later novel codes "
            "are counted as code=\"other\".",
        )  # fmt: skip
        loader.add_option(
            "sinch_latency_buckets", str, DEFAULT_BUCKETS_SPEC,
            "Buckets (seconds, comma-separated, increasing) of "
            "sinch_sms_request_duration_seconds.",
        )  # fmt: skip
        loader.add_option(
            "sinch_regions", Sequence[str], [],
            "HOST[:PORT]=REGION: the region label of an upstream. Sinch hosts "
            "({region}.sms.api.sinch.com) need none; other upstreams without one are 'other'.",
        )  # fmt: skip
        loader.add_option(
            "sinch_hosts", str, routes.SINCH_HOST_PATTERN,
            "Regular expression matched against the whole host name: the hosts counted in "
            "forward (regular) proxy mode. Reverse-mode upstreams are always counted. (To keep "
            "other hosts undecrypted, set allow_hosts to match the same hosts as HOST:PORT.)",
        )  # fmt: skip
        loader.add_option(
            "sinch_upstream_timeout", str, f"{DEFAULT_UPSTREAM_TIMEOUT:g}",
            "Seconds to wait for the upstream's response headers (connect included) before "
            "answering the client 502 and counting reason=\"timeout\" (0: wait forever). A "
            "string, because mitmproxy's --set parses no float options.",
        )  # fmt: skip
        loader.add_option(
            "sinch_shutdown_grace", str, f"{DEFAULT_SHUTDOWN_GRACE:g}",
            "Seconds the proxy may keep running after SIGTERM or a first SIGINT: it still "
            "proxies, and exits once no call is in flight and /metrics was scraped since the "
            "last count (at once if never scraped), or when this runs out; a second signal "
            "stops it at once (0: exit at once). A string: mitmproxy's --set parses no floats.",
        )  # fmt: skip

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if opts.sinch_body_limit < 1:
            raise exceptions.OptionsError("sinch_body_limit must be a positive number of bytes")
        if opts.sinch_code_cap < 0:
            raise exceptions.OptionsError("sinch_code_cap must be 0 or more")
        if not 0 <= opts.sinch_metrics_port <= 65535:
            raise exceptions.OptionsError(f"sinch_metrics_port {opts.sinch_metrics_port} is not a port")
        upstream_timeout = _parsed("sinch_upstream_timeout", parse_timeout, opts.sinch_upstream_timeout)
        shutdown_grace = _parsed("sinch_shutdown_grace", parse_timeout, opts.sinch_shutdown_grace)
        buckets = _parsed("sinch_latency_buckets", parse_buckets, opts.sinch_latency_buckets)
        regions = _parsed("sinch_regions", parse_region_map, opts.sinch_regions)
        counted_hosts = _parsed(
            "sinch_hosts", lambda p: re.compile(routes.host_pattern(p), re.IGNORECASE), opts.sinch_hosts
        )
        web_config = _parsed("sinch_metrics_web_config", WebConfig.load, opts.sinch_metrics_web_config)

        self._body_limit = opts.sinch_body_limit
        self._configured_regions = regions
        self._region_cache.clear()
        self._counted_hosts = counted_hosts
        self.deadline.timeout = upstream_timeout
        self.lifecycle.grace = shutdown_grace
        if self.metrics is None or updated & {"sinch_latency_buckets", "sinch_code_cap", "sinch_regions"}:
            self.metrics = Metrics(
                buckets=buckets,
                code_cap=opts.sinch_code_cap,
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
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _restart_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        port = ctx.options.sinch_metrics_port
        if port and self.metrics is not None:
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
        if self.metrics is None or not self._counted(flow):
            return
        reason = "timeout" if timed_out else upstream_error_reason(flow)
        region = self._region(flow)
        endpoint = routes.endpoint_of(flow.request.path)
        method = routes.method_label(flow.request.method)
        if reason is None:
            self.metrics.record_client_abort(region, endpoint, method)
        else:
            self.metrics.record_upstream_error(region, endpoint, method, reason)

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
