"""A traffic generator: realistic Sinch SMS API requests, for the demo and the stacks.

Sends the calls a real service makes (send a batch, dry-run, poll a batch, fetch delivery
reports, manage groups, list inbounds), with a bearer token and phone numbers in them, at a
steady rate over keep-alive connections. Which answer comes back is the upstream's choice
(the simulator's scenario), or forced with `--sim` (the simulator's X-Sinch-Sim header).
A small share of the requests (`--abort-share`, 1 % by default) is sent by an impatient
client: it asks the simulator for a slow answer and hangs up before it comes, which the proxy
counts as a client abort. With `--callback-url`, sent batches ask for delivery reports there
(every `delivery_report` setting, one to three recipients): the simulator then calls back.

    python -m sinch_sms_exporter.sim.traffic --target http://127.0.0.1:8080 --rate 20
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

FAKE_TOKEN = "demo-token-0123456789abcdef"
BATCH_IDS = ("01FC66621XXXXX119Z8PMV1QPQ", "01FC66621XXXXX119Z8PMV1QPR", "01FC66621XXXXX119Z8PMV1QPS")
GROUP_IDS = ("01FC66621VHDBN119Z8PMV1QPU", "01FC66621VHDBN119Z8PMV1AHY")
PHONES = ("+15551231234", "+46701234567", "+447700900123")
#: The client side of the mix: the share of requests whose caller gives up before the answer
#: (a service with a client timeout shorter than Sinch's answer time). Such a request asks the
#: simulator for SLOW_ANSWER and waits ABORT_TIMEOUT seconds, far less than the answer takes
#: and than any proxy --upstream-timeout: the proxy counts a client abort, never an answer.
ABORT_SHARE = 0.01
ABORT_TIMEOUT = 0.5
SLOW_ANSWER = "slow:2"
#: The delivery report settings batches ask for when the traffic has a callback URL.
DELIVERY_REPORTS = ("summary", "full", "per_recipient", "per_recipient_final")
#: The Tally key of a request the client abandoned on purpose.
ABANDONED = "abandoned"


@dataclass(frozen=True)
class Call:
    weight: float
    method: str
    path: Callable[[random.Random], str]
    body: Callable[[random.Random], dict] | None = None


def _batch(rng: random.Random) -> dict:
    return {
        "from": "12345",
        "to": [rng.choice(PHONES)],
        "body": "Your code is 123456",
        "delivery_report": "summary",
    }


#: The mix of calls a typical service makes (paths relative to /xms/v1/{plan}/).
CALLS: tuple[Call, ...] = (
    Call(50, "POST", lambda r: "batches", _batch),
    Call(5, "POST", lambda r: "batches/dry_run", _batch),
    Call(10, "GET", lambda r: f"batches/{r.choice(BATCH_IDS)}"),
    Call(3, "GET", lambda r: "batches?page=0"),
    Call(8, "GET", lambda r: f"batches/{r.choice(BATCH_IDS)}/delivery_report?type=summary"),
    Call(3, "GET", lambda r: f"batches/{r.choice(BATCH_IDS)}/delivery_report/{r.choice(PHONES)}"),
    Call(2, "POST", lambda r: f"batches/{r.choice(BATCH_IDS)}/delivery_feedback", lambda r: {"recipients": []}),
    Call(5, "GET", lambda r: "delivery_reports?page_size=30"),
    Call(3, "POST", lambda r: "groups", lambda r: {"name": "customers", "members": [r.choice(PHONES)]}),
    Call(2, "GET", lambda r: f"groups/{r.choice(GROUP_IDS)}"),
    Call(2, "GET", lambda r: f"groups/{r.choice(GROUP_IDS)}/members"),
    Call(1, "DELETE", lambda r: f"groups/{r.choice(GROUP_IDS)}"),
    Call(4, "GET", lambda r: "inbounds"),
    Call(1, "GET", lambda r: "inbounds/01FC66621XXXXX119Z8PMV1INB"),
    Call(1, "GET", lambda r: "no_such_endpoint"),
)


@dataclass
class Tally:
    """What the clients received, by status (`error` for no HTTP answer)."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(sorted(self.counts.items()))


def _batch_request() -> tuple[bytes, dict[str, str]]:
    """The body and headers of one "send a batch" call, as the service would send it."""
    body = json.dumps(_batch(random.Random(0))).encode()
    return body, {"Authorization": f"Bearer {FAKE_TOKEN}", "Content-Type": "application/json"}


def send_one(target: str, plan: str, sim: str | None, timeout: float = 35.0, endpoint: str = "batches") -> str:
    """Send one `POST /xms/v1/{plan}/{endpoint}` (a batch), its answer forced to `sim` (None:
    the upstream's choice); the status, or "error"."""
    parts = urlsplit(target)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    body, headers = _batch_request()
    if sim is not None:
        headers["X-Sinch-Sim"] = sim
    try:
        conn.request("POST", f"/xms/v1/{plan}/{endpoint}", body, headers)
        response = conn.getresponse()
        response.read()
        return str(response.status)
    except (OSError, http.client.HTTPException):
        return "error"
    finally:
        conn.close()


def abandon(host: str, port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> str:
    """Send one request whose answer comes late (SLOW_ANSWER) and hang up after ABORT_TIMEOUT
    seconds, on a connection of its own; ABANDONED, or the status if an answer came in time."""
    conn = http.client.HTTPConnection(host, port, timeout=ABORT_TIMEOUT)
    try:
        conn.request(method, path, body, {**headers, "X-Sinch-Sim": SLOW_ANSWER})
        response = conn.getresponse()
        response.read()
        return str(response.status)
    except TimeoutError:
        return ABANDONED
    except (OSError, http.client.HTTPException):
        return "error"
    finally:
        conn.close()


def abandon_one(target: str, plan: str) -> str:
    """One `POST /batches` the client abandons before its slow answer (a client abort)."""
    parts = urlsplit(target)
    body, headers = _batch_request()
    return abandon(parts.hostname or "127.0.0.1", parts.port or 80, "POST", f"/xms/v1/{plan}/batches", body, headers)


class Generator:
    def __init__(
        self,
        target: str,
        plan: str,
        rate: float,
        concurrency: int,
        sim: str | None,
        seed: int | None,
        abort_share: float = ABORT_SHARE,
        callback_url: str | None = None,
    ):
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--target must be http://HOST:PORT, got {target!r}")
        if not 0.0 <= abort_share <= 1.0:
            raise ValueError(f"--abort-share must be between 0 and 1, got {abort_share!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.plan = plan
        self.interval = concurrency / rate if rate > 0 else 0.0
        self.concurrency = concurrency
        self.sim = sim
        self.seed = seed
        #: A forced answer (--sim) is every request's: then no request is abandoned.
        self.abort_share = 0.0 if sim else abort_share
        self.callback_url = callback_url
        self.tally = Tally()
        self.stop = threading.Event()

    def _worker(self, index: int) -> None:
        rng = random.Random(None if self.seed is None else self.seed + index)
        weights = [c.weight for c in CALLS]
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic() + rng.random() * self.interval
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            next_at = max(next_at + self.interval, time.monotonic() - 1.0)
            call = rng.choices(CALLS, weights)[0]
            relative = call.path(rng)
            path = f"/xms/v1/{self.plan}/{relative}"
            headers = {"Authorization": f"Bearer {FAKE_TOKEN}", "Accept": "application/json"}
            body = None
            if call.body is not None:
                document = call.body(rng)
                if self.callback_url and relative == "batches":
                    document.update(
                        callback_url=self.callback_url,
                        delivery_report=rng.choice(DELIVERY_REPORTS),
                        to=rng.sample(PHONES, rng.randint(1, len(PHONES))),
                    )
                body = json.dumps(document).encode()
                headers["Content-Type"] = "application/json"
            if self.sim:
                headers["X-Sinch-Sim"] = self.sim
            if self.abort_share and rng.random() < self.abort_share:
                self.tally.add(abandon(self.host, self.port, call.method, path, body, headers))
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=35)
                conn.request(call.method, path, body, headers)
                response = conn.getresponse()
                response.read()
                self.tally.add(str(response.status))
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                self.tally.add("error")
                if conn is not None:
                    conn.close()
                conn = None

    def run(
        self, duration: float = 0.0, report_every: float = 0.0, report: Callable[[dict], None] | None = None
    ) -> dict:
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        last_report = started
        try:
            while not self.stop.is_set():
                if duration and time.monotonic() - started >= duration:
                    break
                self.stop.wait(0.2)
                if report and report_every and time.monotonic() - last_report >= report_every:
                    last_report = time.monotonic()
                    report(self.tally.snapshot())
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=40)
        return self.tally.snapshot()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sinch-sms-traffic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="http://127.0.0.1:8080", help="the proxy's base URL")
    parser.add_argument("--plan", default="DEMOPLAN0123456789", help="service plan id in the paths")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in total")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel keep-alive connections")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    parser.add_argument("--sim", help="force one simulator answer on every request (X-Sinch-Sim)")
    parser.add_argument(
        "--abort-share",
        type=float,
        default=ABORT_SHARE,
        help=f"share of requests abandoned before a slow answer: client aborts (default {ABORT_SHARE:g}; "
        "0: none; none with --sim)",
    )
    parser.add_argument("--seed", type=int, help="random seed (repeatable runs)")
    parser.add_argument("--callback-url", help="batches ask for delivery reports at this URL (the callback listener)")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.concurrency < 1:
        parser.error("--rate must be > 0 and --concurrency >= 1")
    try:
        generator = Generator(
            args.target,
            args.plan,
            args.rate,
            args.concurrency,
            args.sim,
            args.seed,
            args.abort_share,
            args.callback_url,
        )
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, lambda *_: generator.stop.set())
    print(f"sending ~{args.rate:g} req/s to {args.target} (Ctrl-C stops)", flush=True)
    try:
        final = generator.run(args.duration, args.report_every, lambda t: print(f"answers so far: {t}", flush=True))
    except KeyboardInterrupt:
        generator.stop.set()
        final = generator.tally.snapshot()
    print(f"answers: {final}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
