"""Why a flow got no complete upstream answer: a bounded `reason`, or None for client aborts.

mitmproxy reports failures as free-text messages (`flow.error.msg`) that differ between
its versions and the OS; the connection timestamps say how far the upstream connection
got, which is the sturdier signal. Messages refine it where they are unambiguous.
"""

from __future__ import annotations

import re

from mitmproxy import http

from sinch_sms_exporter.contract.labels import REASON_CLOSED, REASON_CONNECT, REASON_DNS, REASON_PROTOCOL, REASON_TLS

_DNS_HINTS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo",
    "name resolution",
)
# mitmproxy's handshake errors: "Certificate verify failed: …", "tlsv1 alert unknown ca",
# "The remote server does not speak TLS.", "OpenSSL Error(…)"; a peer closing mid-handshake
# is plain "connection closed" (TCP connect errors are OSError texts: "[Errno 111] …").
_TLS_HINTS = ("tls", "ssl", "certificate", "alert")
_CLIENT_HINTS = ("client disconnected", "client closed")
# "HTTP/1 protocol error: peer closed connection without sending complete message body"
# is a cut, not a protocol violation: closing hints are checked first.
_CLOSED_HINTS = ("closed", "reset", "disconnected", "eof", "broken pipe")
# "Cannot parse HTTP response: Bad HTTP response line: b'…'": a malformed head, whatever it says.
_MALFORMED_HINTS = ("cannot parse",)
# Upstream bytes quoted in a message ("… b'HTTP/1.1 2OO closed'") must not pass for hints.
_QUOTED = re.compile(r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*\"""")
_PROTOCOL_HINTS = ("protocol error", "invalid", "malformed", "refusing to prevent request smuggling")


def upstream_error_reason(flow: http.HTTPFlow) -> str | None:
    """connect, dns, tls, closed, protocol or other; None when the client went away first."""
    message = _QUOTED.sub("", flow.error.msg if flow.error else "").lower()
    server = flow.server_conn
    if any(hint in message for hint in _CLIENT_HINTS) or message == "killed":
        return None
    if server.timestamp_tcp_setup is None:
        # mitmproxy attaches the upstream connection to the flow only once TCP and TLS are
        # both up: a failed handshake leaves the flow's server_conn unconnected, so the
        # message tells a TLS failure (its messages below) from a failed TCP connect.
        if any(hint in message for hint in _DNS_HINTS):
            return REASON_DNS
        if any(hint in message for hint in _TLS_HINTS) or message == "connection closed":
            return REASON_TLS
        return REASON_CONNECT
    if server.tls and server.timestamp_tls_setup is None:
        return REASON_TLS
    if any(hint in message for hint in _TLS_HINTS):
        return REASON_TLS
    if any(hint in message for hint in _MALFORMED_HINTS):
        return REASON_PROTOCOL
    if any(hint in message for hint in _CLOSED_HINTS):
        return REASON_CLOSED
    if any(hint in message for hint in _PROTOCOL_HINTS):
        return REASON_PROTOCOL
    return REASON_CLOSED
