"""Upstream failures in the log at the default level, without flooding it.

With no internet every call fails the same way; a line per request would bury everything
else, none at all leaves the terminal silent while the service gets 502s. So each kind of
failure (`reason`) is logged at info the first time, then at most once per `every` seconds
as a count: one summary line at the end of a window in which more happened. A line names the
reason and the upstream (host:port and region: the configured upstream, or in forward mode a
host matching --forward-hosts), never a path, query, header or body. The counts that matter
are in sinch_sms_upstream_errors_total; these lines only say where to look.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy.utils import human

from sinch_sms_exporter.contract import labels

#: Seconds between two lines about the same reason.
EVERY = 60.0


@dataclass
class _Window:
    """Failures of one reason since its last line."""

    started: float
    count: int = 0
    upstream: str = ""
    flush: asyncio.TimerHandle | None = None


class UpstreamFailureLog:
    """Logs the first failure of each reason at once, later ones as a count per window."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
        *,
        what: str = "upstream failure",
        metric: str = "sinch_sms_upstream_errors_total",
    ) -> None:
        self.logger, self.every, self.clock = logger, every, clock
        #: how a line starts, and the metric it points to (API calls, or callbacks to the receiver)
        self.what, self.metric = what, metric
        self._windows: dict[str, _Window] = {}  # at most one per reason: a fixed set

    def failed(self, reason: str, host: str, port: int, region: str | None = None) -> None:
        """One request got no complete answer from upstream `host`:`port` for `reason`."""
        address = human.format_address((host, port))
        upstream = f"{address} (region {region})" if region else address
        now = self.clock()
        window = self._windows.get(reason)
        if window is None or (window.count == 0 and now - window.started >= self.every):
            self._windows[reason] = _Window(now)
            meaning = labels.UPSTREAM_ERROR_TEXTS.get(reason, labels.UPSTREAM_ERROR_TEXTS[labels.OTHER])
            self.logger.info(
                f"{self.what}: {reason} ({meaning}) on {upstream}: answered 502, "
                f"counted in {self.metric}; repeats are summed every {self.every:g} s"
            )
            return
        window.count += 1
        window.upstream = upstream
        if now - window.started >= self.every:
            self._flush(reason)
        elif window.flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (unit tests): the next failure flushes
                return
            window.flush = loop.call_later(window.started + self.every - now, self._flush, reason)

    def _flush(self, reason: str) -> None:
        """The window's summary line, if anything happened in it; a new window starts."""
        window = self._windows.get(reason)
        if window is None:
            return
        if window.flush is not None:
            window.flush.cancel()
        now = self.clock()
        if window.count:
            self.logger.info(
                f"{self.what}: {reason}, {window.count} more in the last {now - window.started:.0f} s "
                f"(last on {window.upstream})"
            )
        self._windows[reason] = _Window(now)

    def close(self) -> None:
        """Cancel pending summaries (the proxy stops)."""
        for window in self._windows.values():
            if window.flush is not None:
                window.flush.cancel()
        self._windows.clear()
