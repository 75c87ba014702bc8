"""The upstream answer deadline: a request that gets no response headers in time is cut.

mitmproxy itself has no such deadline (a silent upstream holds a request for the 10 min
TCP idle timeout, and a black-holed connect for the kernel's ~2 min), so the service would
hang. We abort the upstream connection instead; mitmproxy's HTTP layer then answers the
client with a 502, and the flow's error hook counts reason="timeout".

One periodic task checks an insertion-ordered dict (deadlines are monotonic because the
timeout is the same for every flow), so tracking a flow costs one dict insert and delete.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import connection, ctx, http

logger = logging.getLogger(__name__)

#: Set in a flow's metadata when the deadline cut it: it lives and dies with the flow.
EXPIRED = "sinch_upstream_timeout"


class UpstreamDeadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[str, tuple[float, http.HTTPFlow]] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None and self.timeout > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="sinch upstream deadline")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._pending.clear()

    def track(self, flow: http.HTTPFlow) -> None:
        if self.timeout > 0:
            self._pending[flow.id] = (time.monotonic() + self.timeout, flow)

    def answered(self, flow: http.HTTPFlow) -> None:
        self._pending.pop(flow.id, None)

    def pop_expired(self, flow: http.HTTPFlow) -> bool:
        """Forget a finished flow; True if it was cut by the deadline."""
        self._pending.pop(flow.id, None)
        return flow.metadata.pop(EXPIRED, False)

    async def _watch(self) -> None:
        period = min(1.0, max(self.timeout / 4, 0.05))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            while self._pending:
                flow_id, (deadline, flow) = next(iter(self._pending.items()))
                if deadline > now:
                    break
                del self._pending[flow_id]
                if flow.response is None and flow.error is None and flow.live:
                    flow.metadata[EXPIRED] = True
                    _abort_upstream(flow)


def _abort_upstream(flow: http.HTTPFlow) -> None:
    """Cancel the task that owns the flow's upstream connection (connecting or connected).

    Its cancellation closes the connection and tells the HTTP layer the server went away,
    which answers the client with a 502. This reaches into mitmproxy's Proxyserver (the
    same path its own `inject` commands use); if that ever changes, the flow is killed
    instead, so a hung upstream never holds the client forever.
    """
    try:
        transports = ctx.master.addons.get("proxyserver").connections[flow.client_conn.id].transports
        pending = _upstream_connections(flow, transports)
        if not pending:
            raise LookupError("no upstream connection")
        for conn in pending:
            transports[conn].handler.cancel("sinch upstream timeout")
    except Exception:  # noqa: BLE001 - mitmproxy internals; fall back to killing the flow
        logger.warning("upstream timeout: cannot abort the upstream connection, killing the flow")
        if flow.killable:
            flow.kill()


def _upstream_connections(flow: http.HTTPFlow, transports: dict) -> list[connection.Server]:
    """The flow's upstream connection, connected or still connecting.

    mitmproxy attaches a new upstream connection to the flow (`flow.server_conn`) only once
    TCP connect and TLS handshake have succeeded; until then (a black-holed SYN, a server
    that accepts but never finishes the handshake) it is found among the client handler's
    unfinished connections to the flow's upstream address.
    """
    if flow.server_conn in transports:
        return [flow.server_conn]
    address = (flow.request.host, flow.request.port)
    return [
        conn
        for conn in transports
        if isinstance(conn, connection.Server)
        and conn.address == address
        and (conn.timestamp_tcp_setup is None or (conn.tls and conn.timestamp_tls_setup is None))
        and transports[conn].handler is not None
    ]
