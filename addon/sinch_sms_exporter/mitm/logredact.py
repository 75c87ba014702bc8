"""Keep traffic bytes out of the log.

mitmproxy quotes raw protocol bytes in some of its messages, e.g. at `--log-level debug`
`Invalid header line: b'Authorization Bearer …'`, `Bad HTTP request line: b'POST /xms/v1/
{plan}/batches/…/delivery_report/+4670…'`, `Unexpected data from server: b'…'`: tokens,
phone numbers and service plan ids would reach the log. This filter replaces every Python
bytes literal in a log message with a placeholder, whatever logger it came from; the rest
of the message (what went wrong, and with which connection) stays.
"""

from __future__ import annotations

import logging
import re

PLACEHOLDER = "b'<redacted>'"
_BYTES_LITERAL = re.compile(r"""b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*\"""")


class RedactBytes(logging.Filter):
    """A handler filter: rewrites records whose message quotes bytes; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's problem, not ours
            return True
        if "b'" in message or 'b"' in message:
            redacted = _BYTES_LITERAL.sub(PLACEHOLDER, message)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (default: the root logger, where
    mitmproxy's terminal log handler sits): records from all loggers pass through it."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactBytes) for f in handler.filters):
            handler.addFilter(RedactBytes())
