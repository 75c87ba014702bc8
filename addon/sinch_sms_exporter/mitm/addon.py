"""The mitmproxy addon: options, configure, and thin hooks (classify, then record).

Loaded by `sinch-sms-proxy` (proxy.py) or by plain mitmproxy:
    mitmdump -s "$(sinch-sms-proxy --print-addon-path)" --mode reverse:https://us.sms.api.sinch.com

Hooks never raise on upstream data and never change what passes through: the only thing
set on a flow is how its response body is carried (buffered or streamed), never its bytes.

/healthz reports the proxy, not just the metrics thread: `health()` asks the event loop
whether every proxy listener runs (`proxy_listener_problems`). A metrics port that cannot be
opened at startup is an error-level log: mitmproxy's errorcheck addon (in mitmdump and in
sinch-sms-proxy) then ends the process, since a sidecar without /metrics is useless.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

import mitmproxy
from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode
from mitmproxy.utils import human

from sinch_sms_exporter import __version__
from sinch_sms_exporter.classify import callbacks, responses, routes
from sinch_sms_exporter.classify.upstream_errors import upstream_error_reason
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.exposition import MetricsServer, WebConfig
from sinch_sms_exporter.metrics import DEFAULT_BUCKETS_SPEC, DEFAULT_CODE_CAP, Metrics, parse_buckets
from sinch_sms_exporter.mitm import logredact
from sinch_sms_exporter.mitm.timeouts import UpstreamDeadline

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 19880
#: First callback listener's port (ARCHITECTURE.md, "Callbacks"); further ones count up.
DEFAULT_CALLBACK_PORT = 8090
#: Where callback listeners listen unless told otherwise: all interfaces, Sinch must reach them.
DEFAULT_CALLBACK_LISTEN_HOST = "0.0.0.0"
#: What a flow is to the exporter (see SinchSmsExporter._role).
_IGNORED, _API, _CALLBACK = 0, 1, 2
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


def callback_mode(entry: str) -> str:
    """'http://receiver:9000@0.0.0.0:8090' → mitmproxy's mode spec of that callback listener,
    'reverse:http://receiver:9000@0.0.0.0:8090'; ValueError if the entry is not URL@[HOST:]PORT."""
    url, at, listen = entry.strip().rpartition("@")
    scheme, sep, rest = url.partition("://")
    if not at or scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/"):
        raise ValueError(
            f"bad sinch_callback_upstreams entry {entry!r}: expected URL@[HOST:]PORT, URL the "
            "receiver's base (http(s)://HOST[:PORT], no path), e.g. http://127.0.0.1:9000@8090"
        )
    port = listen.rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad sinch_callback_upstreams entry {entry!r}: the listen port after '@' is not a port")
    spec = f"reverse:{url.rstrip('/')}@{listen}"
    ProxyMode.parse(spec)  # mitmproxy's own check (ValueError)
    return spec


def parse_callback_modes(entries: Sequence[str]) -> list[str]:
    """The mode specs of the callback listeners; ValueError for a bad entry or a shared port."""
    modes = [callback_mode(e) for e in entries]
    ports = [ProxyMode.parse(m).custom_listen_port for m in modes]
    if len(set(ports)) != len(ports):
        raise ValueError(f"two sinch_callback_upstreams share a listen port ({', '.join(map(str, ports))})")
    return modes


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
        self._body_limit = responses.DEFAULT_BODY_LIMIT
        self._configured_regions: dict[str, str] = {}
        self._region_cache: dict[tuple[str, int], str] = {}
        self._counted_hosts: re.Pattern[str] = routes.SINCH_HOST_RE
        #: Mode specs (full_spec) of the callback listeners: their flows are callbacks.
        self._callback_modes: frozenset[str] = frozenset()
        self._web_config: WebConfig | None = None
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener_setup: asyncio.Task[bool] | None = None
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
            "sinch_callback_upstreams", Sequence[str], [],
            "URL@[HOST:]PORT: a callback listener on [HOST:]PORT in front of the service's "
            "callback receiver at URL (e.g. http://127.0.0.1:9000@0.0.0.0:8090). Sinch's "
            "callbacks pass unchanged and are counted by type, receiver status and delivery "
            "status. The addon adds the reverse mode to `mode` itself.",
        )  # fmt: skip
        loader.add_option(
            "sinch_delivery_code_cap", int, labels.DEFAULT_DELIVERY_CODE_CAP,
            "Distinct delivery codes besides 0, 400-408 and 410-418 kept verbatim (SMPP and "
            "MMS codes); later novel codes are counted as code=\"other\".",
        )  # fmt: skip

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if opts.sinch_body_limit < 1:
            raise exceptions.OptionsError("sinch_body_limit must be a positive number of bytes")
        if opts.sinch_code_cap < 0:
            raise exceptions.OptionsError("sinch_code_cap must be 0 or more")
        if opts.sinch_delivery_code_cap < 0:
            raise exceptions.OptionsError("sinch_delivery_code_cap must be 0 or more")
        callback_modes = _parsed("sinch_callback_upstreams", parse_callback_modes, opts.sinch_callback_upstreams)
        if not 0 <= opts.sinch_metrics_port <= 65535:
            raise exceptions.OptionsError(f"sinch_metrics_port {opts.sinch_metrics_port} is not a port")
        upstream_timeout = _parsed("sinch_upstream_timeout", parse_timeout, opts.sinch_upstream_timeout)
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
        self._callback_modes = frozenset(callback_modes)
        self.deadline.timeout = upstream_timeout
        if self.metrics is None or updated & {
            "sinch_latency_buckets", "sinch_code_cap", "sinch_delivery_code_cap", "sinch_regions"
        }:  # fmt: skip
            self.metrics = Metrics(
                buckets=buckets,
                code_cap=opts.sinch_code_cap,
                delivery_code_cap=opts.sinch_delivery_code_cap,
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
        missing = [m for m in callback_modes if m not in opts.mode]
        if missing:
            # One option is the whole setup for `mitmdump -s` users too: the listener is added
            # here (sinch-sms-proxy passes it in `mode` already). Triggers a nested configure.
            opts.update(mode=[*opts.mode, *missing])

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

    def _start_callback_listeners(self) -> None:
        """Start callback listeners the proxy server has not started. mitmdump 12 may load a
        `-s` script while it brings up its listeners: the `mode` entries configure added then
        reach no listener until the servers are set up again (a no-op for running ones)."""
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None or not self._callback_modes or self._loop is None:
            return
        if not self._callback_modes <= {instance.mode.full_spec for instance in proxyserver.servers}:
            self._listener_setup = self._loop.create_task(proxyserver.setup_servers())

    def done(self) -> None:
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
                self.server = MetricsServer.start(self.metrics.registry, host, port, self._web_config, self.health)
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
        every proxy listener runs, else why not (one line, nothing secret)."""
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

    def client_connected(self, client: connection.Client) -> None:
        """Sinch calls back from public addresses, which mitmproxy's block_global (on by
        default) refuses; on a callback listener that refusal is lifted, nowhere else."""
        if client.error and client.proxy_mode.full_spec in self._callback_modes:
            try:
                address = ipaddress.ip_address(client.peername[0].rsplit("%", 1)[0])
            except ValueError:
                return
            if isinstance(address, ipaddress.IPv6Address):
                address = address.ipv4_mapped or address
            if address.is_global and not (getattr(ctx.options, "block_private", False) and address.is_private):
                client.error = None

    def request(self, flow: http.HTTPFlow) -> None:
        if self._role(flow):
            self.deadline.track(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.deadline.answered(flow)
        response = flow.response
        if response is None or response.stream:
            return
        role = self._role(flow)
        if role == _API:
            response.stream = responses.stream_for(response, self._body_limit)
        elif role == _CALLBACK:
            # The receiver's answer is never parsed: buffered when small, else streamed.
            length = responses.header(response, b"content-length")
            response.stream = not (length is not None and length.isdigit() and int(length) <= self._body_limit)

    def response(self, flow: http.HTTPFlow) -> None:
        role = self._role(flow)
        if self.metrics is None or not role:
            return
        try:
            if role == _CALLBACK:
                request = flow.request
                outcome = callbacks.classify_body(
                    request.raw_content, responses.header(request, b"content-encoding") or "", self._body_limit
                )
                self.metrics.record_callback(outcome, flow.response.status_code)  # type: ignore[union-attr]
                return
            answer = responses.classify(flow, self._region(flow), self._body_limit)
        except Exception:
            logger.exception("sinch-sms-exporter: cannot classify an answer (not counted)")
            return
        self.metrics.record_response(answer)

    def error(self, flow: http.HTTPFlow) -> None:
        timed_out = self.deadline.pop_expired(flow)
        role = self._role(flow)
        if self.metrics is None or not role:
            return
        reason = "timeout" if timed_out else upstream_error_reason(flow)
        if role == _CALLBACK:
            if reason is not None:  # None: Sinch hung up first; the receiver is not at fault
                self.metrics.record_callback_error(reason)
            return
        region = self._region(flow)
        endpoint = routes.endpoint_of(flow.request.path)
        method = routes.method_label(flow.request.method)
        if reason is None:
            self.metrics.record_client_abort(region, endpoint, method)
        else:
            self.metrics.record_upstream_error(region, endpoint, method, reason)

    # --- helpers -------------------------------------------------------------------------

    def _role(self, flow: http.HTTPFlow) -> int:
        """_CALLBACK for flows of a callback listener; _API for other reverse-mode flows and
        forward-mode flows to Sinch hosts; _IGNORED for the rest (tunnelled, not decrypted)."""
        mode = flow.client_conn.proxy_mode
        if mode.full_spec in self._callback_modes:
            return _CALLBACK
        if isinstance(mode, ReverseMode):
            return _API
        return _API if self._counted_hosts.fullmatch(flow.request.pretty_host) is not None else _IGNORED

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
