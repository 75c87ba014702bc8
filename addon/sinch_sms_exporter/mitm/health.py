"""What /healthz says about the proxy itself: every mitmproxy listener runs, and the event
loop answers. The metrics server asks from its own thread; the answer is made on the loop,
where the listeners live, within a timeout (a loop that cannot run one callback in that time
is wedged by a blocking hook, not busy)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
from typing import Any

from mitmproxy import ctx
from mitmproxy.utils import human

#: Seconds /healthz waits for the event loop: below the probes' timeouts (Kubernetes
#: example: 2 s, the image's HEALTHCHECK: 4 s).
HEALTH_TIMEOUT = 1.0


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


def probe(loop: asyncio.AbstractEventLoop | None, timeout: float = HEALTH_TIMEOUT) -> str | None:
    """From another thread: None when `loop` runs proxy_listener_problems() within `timeout`
    and finds none; else why not, in one line with nothing secret."""
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
        problems = future.result(timeout=timeout)
    except TimeoutError:
        future.cancel()
        return f"the proxy's event loop did not answer within {timeout:g} s"
    return "; ".join(problems) or None
