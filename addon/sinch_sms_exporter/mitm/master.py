"""A lean mitmproxy Master: only the addons a metrics sidecar needs, plus ours.

`mitmdump` loads ~30 default addons (anticache, maplocal, save, the dumper printing every
flow, …) whose hooks run on every request; a sidecar needs none of them. Keeping only
what proxies, negotiates TLS and guards the listener roughly doubles requests/s (see
bench/). Works on mitmproxy 11 and 12 (same Master and addon APIs).
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import signal
from collections.abc import Mapping
from typing import Any

from mitmproxy import addonmanager, connection, ctx, exceptions, hooks, master, options
from mitmproxy.addons import block, core, disable_h2c, errorcheck, next_layer, proxyserver, termlog, tlsconfig
from mitmproxy.proxy import mode_specs

from sinch_sms_exporter.mitm.addon import SinchSmsExporter
from sinch_sms_exporter.mitm.health import proxy_listener_problems


class StartupError(RuntimeError):
    """The proxy could not start (a port taken since the CLI checked it, …): one line."""


class HookIndex(addonmanager.AddonManager):
    """mitmproxy's AddonManager without its per-event cost for addons that ignore the event.

    mitmproxy passes every flow event (requestheaders, request, responseheaders, response,
    and an `update` after each) to every addon in the chain: a context manager, a coroutine
    and two generators per addon per event, handler or not. That is most of what an addon
    costs per request, and why bare mitmdump (~35 addons) is slow. Here an event visits only
    the chain entries that handle it (looked up once per event name, again after any change
    to the chain); what runs, in which order and with which error handling is unchanged.
    """

    def __init__(self, master: master.Master) -> None:
        super().__init__(master)
        self._handlers: dict[str, list[Any]] = {}

    def _handling(self, name: str) -> list[Any]:
        entries = self._handlers.get(name)
        if entries is None:
            entries = [
                a for a in self.chain if any(callable(getattr(x, name, None)) for x in addonmanager.traverse([a]))
            ]
            self._handlers[name] = entries
        return entries

    async def trigger_event(self, event: hooks.Hook) -> None:
        for addon in self._handling(event.name):
            try:
                with addonmanager.safecall():
                    await self.invoke_addon(addon, event)
            except exceptions.AddonHalt:
                return

    def register(self, addon: Any) -> Any:
        self._handlers.clear()
        return super().register(addon)

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self._handlers.clear()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self._handlers.clear()

    def clear(self) -> None:
        super().clear()
        self._handlers.clear()


class StartupCheck(errorcheck.ErrorCheck):
    """mitmproxy's errorcheck (error-level logs during startup end the process), reporting
    in one line: raises StartupError, which the CLI prints as `sinch-sms-proxy: error: …`.

    mitmproxy runs it after loading the options, after starting the listeners and after
    the `running` hook (where the exporter opens /metrics): a port taken between the CLI's
    check and the start ends the process there, not in a proxy without listeners or
    without metrics. A listener that failed is described from mitmproxy's own record of it
    (`proxy port H:P is already in use`), not its multi-line log message."""

    name = "errorcheck"  # master.run() looks the check up by this name

    def __init__(self) -> None:
        super().__init__(repeat_errors_on_stderr=False)

    async def shutdown_if_errored(self) -> None:
        await asyncio.sleep(0)  # as mitmproxy's: let pending log records arrive
        records = list(self.logger.has_errored)
        if not records:
            return
        from_listeners = [r for r in records if r.name == proxyserver.__name__]
        problems = proxy_listener_problems() if from_listeners else []
        for record in records:
            if problems and record in from_listeners:
                continue  # described from the listeners' own state above
            lines = record.getMessage().strip().splitlines()
            if lines and lines[0] not in problems:
                problems.append(lines[0])
        raise StartupError("; ".join(problems) or "errors were logged during startup")


def tcp_only(mode: mode_specs.ProxyMode) -> mode_specs.ProxyMode:
    """`mode`, listening on TCP only. mitmproxy's reverse mode to an https:// upstream also
    listens on UDP (HTTP/3 over QUIC from the client); a sidecar's clients speak HTTP/1.1 to
    loopback, so that UDP port would be a listener nobody uses. The copy equals `mode` (the
    transport is not part of a mode's identity), so mitmproxy finds its server by the spec."""
    if mode.transport_protocol != "both":
        return mode
    tcp = copy.copy(mode)
    object.__setattr__(tcp, "transport_protocol", mode_specs.TCP)
    return tcp


class TcpProxyserver(proxyserver.Proxyserver):
    """mitmproxy's proxy server addon, its listeners TCP only (`tcp_only`)."""

    name = "proxyserver"  # Master.run() and /healthz look the addon up by this name

    async def setup_servers(self) -> bool:
        return await self.servers.update([tcp_only(mode_specs.ProxyMode.parse(m)) for m in ctx.options.mode])


class CallbackAwareBlock(block.Block):
    """mitmproxy's block_global/block_private, not applied to callback listeners (whose
    senders are Sinch's public addresses): their connections are let in without the warning
    mitmproxy's Block logs for every refused one. (Under `mitmdump -s` mitmproxy's own Block
    refuses them first and the addon lifts the refusal: callback_listeners.admit_public_sender.)"""

    def __init__(self, exporter: SinchSmsExporter) -> None:
        super().__init__()
        self.exporter = exporter

    def client_connected(self, client: connection.Client) -> None:
        if client.proxy_mode.full_spec not in self.exporter.callback_modes:
            super().client_connected(client)


class SidecarMaster(master.Master):
    """Proxy server (TCP only), protocol detection, TLS, listener guard, h2c safety, startup
    error check, the terminal log, and the Sinch exporter: nothing that rewrites traffic."""

    def __init__(self, opts: options.Options) -> None:
        super().__init__(opts, with_termlog=False)
        opts.changed.disconnect(self.addons._configure_all)
        self.addons = HookIndex(self)
        self._termlog_addon = termlog.TermLog()
        self.exporter = SinchSmsExporter()
        self.addons.add(
            self._termlog_addon,
            core.Core(),
            TcpProxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            # Refuses clients from public addresses (block_global) when listening widely,
            # except on callback listeners: Sinch calls those from the internet.
            CallbackAwareBlock(self.exporter),
            # Strips h2c upgrade requests mitmproxy cannot carry (else: protocol errors).
            disable_h2c.DisableH2C(),
            StartupCheck(),
            self.exporter,
        )


def _quiet_libraries(verbosity: str) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    for name in ("asyncio", "hpack", "quic", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if verbosity != "debug":
        # Four lines per request ("client connect", "server connect", …) at info: noise
        # for a sidecar, and measurable CPU. Failures are counted in the metrics instead.
        logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)


async def _serve(settings: Mapping[str, Any]) -> None:
    _quiet_libraries(settings.get("termlog_verbosity", "info"))
    sidecar = SidecarMaster(options.Options())
    sidecar.options.update(**settings)

    loop = asyncio.get_running_loop()
    # The first signal sets mitmproxy's exit flag; the exporter's `done` hook then drains
    # (calls in flight, the last scrape; lifecycle.py) and takes these signals over, so that
    # a second one stops at once.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sidecar.shutdown)
    # A client vanishing mid-write must not kill the process (mitmproxy#6744).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Everything loaded so far (mitmproxy, its addons, certificates) lives as long as the
    # process. Frozen, the collector stops re-scanning it: a full collection (about one per
    # 1,500 requests under load) otherwise held the event loop for ~60 ms, the p99 latency.
    gc.collect()
    gc.freeze()
    try:
        await sidecar.run()
    finally:
        # Client connections still open at shutdown are cancelled by asyncio.run(); on Python
        # 3.11 asyncio's stream callback then logs each one's CancelledError as a traceback.
        # Those cancellations are the shutdown itself, not errors.
        loop.set_exception_handler(_ignore_shutdown_cancellations)


def _ignore_shutdown_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def serve(settings: Mapping[str, Any]) -> None:
    """Run the sidecar with these mitmproxy options until SIGINT/SIGTERM."""
    asyncio.run(_serve(settings))
