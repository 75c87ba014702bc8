"""Shutdown without loss: drain the calls in flight, keep the last counts until they are scraped.

On SIGTERM (or a first SIGINT) mitmproxy sets its exit flag and runs the `done` hooks. Its
listeners keep running until the process ends (mitmproxy 11 and 12: the proxyserver addon
has no `done`), so while the exporter's `done` waits, calls in flight finish and new calls
are still proxied. The wait ends, and the process exits, as soon as no call is in flight and
/metrics has been scraped since the last count (at once if nothing ever scraped it), when
the grace runs out, or on a second SIGTERM/SIGINT. This works the same under
`sinch-sms-proxy` and under `mitmdump -s`, whose signal handlers only set the exit flag.

Hot path: a flow is in flight from the `request` hook to `response` or `error`; tracking it
is a flag in its metadata and an int increment (the flag keeps a flow that errors after
its response, or errors before its request, from being counted twice or not at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from mitmproxy import http

from sinch_sms_exporter.exposition import Counts
from sinch_sms_exporter.settings import DEFAULT_SHUTDOWN_GRACE

logger = logging.getLogger(__name__)

#: How often the drain looks at the in-flight count and the last scrape (seconds): the
#: delay between the last scrape and the exit.
POLL = 0.05
#: Seconds the connection handlers get to write the last answer once nothing is in flight.
SETTLE = 0.01
#: Set in a flow's metadata while it is counted in flight.
IN_FLIGHT = "sinch_in_flight"


class Lifecycle:
    """In-flight tracking, the drain on shutdown, and what /healthz says meanwhile."""

    def __init__(self, grace: float = DEFAULT_SHUTDOWN_GRACE) -> None:
        self.grace = grace
        self.in_flight = 0
        self.draining_since: float | None = None  # time.monotonic() at the start of the drain
        self._stop_now: asyncio.Event | None = None

    # --- the hot path (event loop) ---------------------------------------------------------

    def started(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(IN_FLIGHT):
            flow.metadata[IN_FLIGHT] = True
            self.in_flight += 1

    def ended(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(IN_FLIGHT, False):
            self.in_flight -= 1

    # --- state -----------------------------------------------------------------------------

    def waiting_for(self, counts: Counts | None) -> list[str]:
        """What keeps the proxy from exiting now ([] if nothing). Safe from any thread."""
        waiting = []
        if self.in_flight > 0:
            waiting.append(f"{self.in_flight} call{'s' if self.in_flight != 1 else ''} in flight")
        if counts is not None and counts.scraped is not None and counts.scraped < counts.recorded:
            waiting.append("counts not yet scraped")
        return waiting

    def health(self, counts: Counts | None) -> str | None:
        """/healthz while draining (a 503 and this line), else None. Safe from any thread."""
        since = self.draining_since
        if since is None:
            return None
        left = max(0.0, self.grace - (time.monotonic() - since))
        waiting = ", ".join(self.waiting_for(counts)) or "nothing left to wait for"
        return f"draining: shutting down ({waiting}); exits within {left:.0f} s"

    # --- the drain (event loop) ------------------------------------------------------------

    async def drain(self, counts: Callable[[], Counts | None]) -> None:
        """Wait until nothing is in flight and the last counts were scraped, the grace runs
        out, or a second SIGTERM/SIGINT arrives. `counts()` gives the current metrics."""
        self.draining_since = started = time.monotonic()
        self._stop_now = asyncio.Event()
        deadline = started + self.grace
        announced = False
        while True:
            waiting = self.waiting_for(counts())
            if not waiting:
                # A response hook runs just before the answer is written to the client: let
                # the connection handlers run once more before the process goes.
                await asyncio.sleep(SETTLE)
                if self.waiting_for(counts()):
                    continue
                if announced:
                    logger.info(f"shut down after {time.monotonic() - started:.2f} s: drained")
                else:
                    logger.info("shutting down: nothing in flight, every count scraped")
                return
            if not announced:
                announced = True
                self._take_signals()
                logger.info(
                    f"shutting down: waiting for {' and '.join(waiting)} (at most {self.grace:g} s; "
                    "SIGTERM/SIGINT again stops at once); new calls are still proxied"
                )
            now = time.monotonic()
            if self._stop_now.is_set() or now >= deadline:
                why = "a second signal" if self._stop_now.is_set() else f"the shutdown grace ({self.grace:g} s) ran out"
                logger.warning(f"shutting down on {why}, still waiting for {' and '.join(waiting)}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_now.wait(), min(POLL, deadline - now))

    def _take_signals(self) -> None:
        """While draining, SIGTERM/SIGINT mean "stop now". (mitmdump's own handlers would only
        set the exit flag again, which changes nothing once `done` runs.) They stay installed
        until the process ends: one more signal must not kill it with a non-zero status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop_now)

    def stop_now(self) -> None:
        if self._stop_now is not None:
            self._stop_now.set()
