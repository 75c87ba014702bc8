"""The callback listeners' plumbing in mitmproxy: which listeners they are, starting them
under `mitmdump -s`, and letting Sinch's public addresses in.

A callback listener is a reverse-mode listener in front of the service's receiver
(sinch_callback_upstreams). Its flows are told apart from API flows by their proxy mode's
spec, which is the one the addon put into `mode`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Collection

from mitmproxy import connection, ctx


def missing_modes(modes: Collection[str]) -> list[str]:
    """The callback listeners' mode specs not yet in mitmproxy's `mode` (mitmdump -s users set
    only sinch_callback_upstreams; sinch-sms-proxy passes them in `mode` already)."""
    return [mode for mode in modes if mode not in ctx.options.mode]


def start_missing(modes: Collection[str], loop: asyncio.AbstractEventLoop | None) -> asyncio.Task[bool] | None:
    """Start callback listeners the proxy server has not started. mitmdump 12 may load a `-s`
    script while it brings up its listeners: `mode` entries added then reach no listener
    until the servers are set up again (a no-op for the running ones)."""
    proxyserver = ctx.master.addons.get("proxyserver")
    if proxyserver is None or not modes or loop is None:
        return None
    if set(modes) <= {instance.mode.full_spec for instance in proxyserver.servers}:
        return None
    return loop.create_task(proxyserver.setup_servers())


def admit_public_sender(client: connection.Client, modes: Collection[str]) -> None:
    """Sinch calls back from public addresses, which mitmproxy's block_global (on by default)
    refuses; on a callback listener that refusal is lifted, nowhere else."""
    if not client.error or client.proxy_mode.full_spec not in modes:
        return
    try:
        address = ipaddress.ip_address(client.peername[0].rsplit("%", 1)[0])
    except ValueError:
        return
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address
    if address.is_global and not (getattr(ctx.options, "block_private", False) and address.is_private):
        client.error = None
