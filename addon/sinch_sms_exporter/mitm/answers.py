"""The proxy's own answers: when an upstream failed, the client gets one plain-text line.

mitmproxy answers a request whose upstream failed (refused, unresolvable, bad TLS, closed,
not HTTP, cut by our deadline) with a 502 and an HTML page quoting its internal error message.
A service's Sinch client logs that body; a line that says what happened is more use there:

    HTTP/1.1 502 Bad Gateway
    Content-Type: text/plain; charset=utf-8

    sinch-sms-proxy: cannot connect to the upstream (reason=connect)

The reason is the one the flow is counted under (sinch_sms_upstream_errors_total{reason}).
mitmproxy has no hook for this page: its HTTP/1 server layer renders it after the `error`
hook. So the addon's `error` hook notes the reason by client connection (HTTP/1 carries one
request at a time per connection), and a wrapper around `Http1Server.send` answers with the
line instead of the page. If mitmproxy's internals ever differ, `install` leaves mitmproxy's
page in place (logged at debug level): never a crash, never a changed upstream answer.
HTTP/2 clients keep mitmproxy's page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import http, version
from mitmproxy.net.http import http1

from sinch_sms_exporter.contract import labels

logger = logging.getLogger(__name__)

PREFIX = "sinch-sms-proxy"
#: The statuses the proxy answers for a failed upstream (mitmproxy's BAD_GATEWAY, GATEWAY_TIMEOUT).
_UPSTREAM_STATUSES = (502, 504)
#: Reasons noted by the error hook and not answered yet (the client went away first): bounded.
_MAX_PENDING = 1024
_pending: dict[str, str] = {}
_installed = False


def text_of(reason: str) -> str:
    """`connect` → 'sinch-sms-proxy: cannot connect to the upstream (reason=connect)'."""
    what = labels.UPSTREAM_ERROR_TEXTS.get(reason, labels.UPSTREAM_ERROR_TEXTS[labels.OTHER])
    return f"{PREFIX}: {what} (reason={reason})"


def render(status: int, reason: str) -> bytes:
    """The whole HTTP/1.1 answer: status line, headers, the one line."""
    response = http.Response.make(
        status,
        (text_of(reason) + "\n").encode(),
        {"Server": version.MITMPROXY, "Connection": "close", "Content-Type": "text/plain; charset=utf-8"},
    )
    return http1.assemble_response(response)


def note(client_id: str, reason: str) -> None:
    """The error hook's reason for the answer about to go to this client connection."""
    if len(_pending) >= _MAX_PENDING:
        _pending.pop(next(iter(_pending)))
    _pending[client_id] = reason


def forget(client_id: str) -> None:
    _pending.pop(client_id, None)


def _status_of(code: Any) -> int | None:
    """ResponseProtocolError.code: an int on mitmproxy 11, an ErrorCode (with an HTTP status
    or none) on later versions."""
    to_status = getattr(code, "http_status_code", None)
    if callable(to_status):
        return to_status()
    return int(code) if isinstance(code, int) else None


def install() -> None:
    """Wrap mitmproxy's HTTP/1 server layer once (idempotent; the addon's load calls it)."""
    global _installed
    if _installed:
        return
    try:
        from mitmproxy.connection import ConnectionState
        from mitmproxy.proxy import commands
        from mitmproxy.proxy.layers.http._events import ResponseProtocolError
        from mitmproxy.proxy.layers.http._http1 import Http1Server

        original: Callable[..., Generator[Any, Any, None]] = Http1Server.send
    except (ImportError, AttributeError) as exc:  # pragma: no cover - other mitmproxy versions
        logger.debug(f"keeping mitmproxy's error pages ({exc})")
        return

    def own_answer(self: Any, reason: str, status: int | None) -> Generator[Any, Any, None]:
        yield commands.SendData(self.conn, render(status or 502, reason))
        yield commands.CloseConnection(self.conn)

    def send(self: Any, event: Any) -> Generator[Any, Any, None]:
        # A plain function returning a generator (mitmproxy runs `yield from self.send(event)`):
        # every other event goes straight to mitmproxy's generator, with no frame of ours.
        if isinstance(event, ResponseProtocolError):
            reason = _pending.pop(self.context.client.id, None)
            status = _status_of(event.code)
            if (
                reason is not None
                and status in _UPSTREAM_STATUSES
                and self.response is None
                and self.conn.state & ConnectionState.CAN_WRITE
            ):
                return own_answer(self, reason, status)
        return original(self, event)

    send.__wrapped__ = original  # type: ignore[attr-defined]
    Http1Server.send = send  # type: ignore[method-assign]
    _installed = True
