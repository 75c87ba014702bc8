"""The simulator's callbacks: delivery reports and inbound messages, sent as Sinch sends them.

A batch sent with a `callback_url` and a `delivery_report` other than `none` gets, later:
- `summary`: one `delivery_report_sms` per batch once every message is final (counts only);
- `full`: the same with the recipients of each status;
- `per_recipient`: one `recipient_delivery_report_sms` per status change of each message
  (Queued → Dispatched → final);
- `per_recipient_final`: one recipient report per message, with its final status.
MMS batches (`mt_media`) get the `_mms` types. Final outcomes come from a weighted scenario
(mostly Delivered, some Failed/Expired/Rejected/Aborted with their codes), or from the send
request's `X-Sinch-Sim-Delivery: Status[:code]` header (tests).

Delivery follows Sinch's retry policy: a 2xx answer ends it, 5xx and 429 (and no answer)
are retried 5, 10, 20, … 81,920 s after the failed attempt (15 retries), any other status
drops the callback for good. `time_scale` multiplies every delay (0.01 for tests, 0.2 for
demos). With a secret, callbacks are signed as Sinch's HMAC scheme says:
Base64(HMAC-SHA256(secret, body + "." + nonce + "." + timestamp)) in X-Sinch-Webhook-Signature.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

#: Sinch's first retry comes 5 s after a failed attempt, each next one after twice as long.
RETRY_FIRST = 5.0
RETRIES = 15  # 5 s … 81,920 s (22 h 45 min)
#: When a message changes status after its batch was accepted (seconds, before time_scale).
QUEUED_AFTER, DISPATCHED_AFTER, FINAL_AFTER = 0.2, 1.0, 3.0
#: A receiver that does not answer within this long counts as not answering.
RECEIVER_TIMEOUT = 10.0
#: Recipients of one batch that get reports (a bigger batch is truncated: a simulator).
MAX_RECIPIENTS = 1000
REPORT_TYPES = ("none", "summary", "full", "per_recipient", "per_recipient_final")

#: Final outcomes as (status, code) → weight: what `make demo` shows.
DEMO_OUTCOMES: dict[tuple[str, int], float] = {
    ("Delivered", 0): 92.0,
    ("Failed", 0): 2.0,
    ("Expired", 0): 1.5,
    ("Rejected", 0): 0.5,
    ("Aborted", 402): 1.0,
    ("Aborted", 412): 0.5,
    ("Deleted", 0): 0.25,
    ("Unknown", 0): 1.0,
    ("Failed", 15): 0.25,  # an SMPP code outside Sinch's own
}
#: An operator outage: most messages fail (the stack shows SinchSmsDeliveryFailureRate firing).
FAILING_OUTCOMES: dict[tuple[str, int], float] = {("Delivered", 0): 40.0, ("Failed", 0): 40.0, ("Expired", 0): 20.0}
OUTCOMES = {"demo": DEMO_OUTCOMES, "delivered": {("Delivered", 0): 1.0}, "failing": FAILING_OUTCOMES}


def sign(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """Sinch's callback signature (X-Sinch-Webhook-Signature) of a raw body."""
    signed = body + b"." + nonce.encode() + b"." + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{datetime.now(UTC).microsecond // 1000:03d}Z"


def _batch_id(rng: random.Random) -> str:
    return "01" + "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24))


def parse_outcome(spec: str) -> tuple[str, int]:
    """'Failed:402' → ('Failed', 402); 'Delivered' → ('Delivered', 0); ValueError if bad."""
    status, _, code = spec.strip().partition(":")
    if not status.isalpha():
        raise ValueError(f"bad delivery outcome {spec!r}: expected STATUS[:CODE], e.g. Failed:402")
    return status.capitalize(), int(code or 0)


class CallbackSender:
    """Sends a simulated Sinch's callbacks and keeps score of the receivers' answers."""

    def __init__(
        self,
        outcomes: Mapping[tuple[str, int], float] | None = None,
        *,
        time_scale: float = 1.0,
        secret: str | None = None,
        seed: int | None = None,
    ) -> None:
        outcomes = outcomes or DEMO_OUTCOMES
        self._outcomes = list(outcomes)
        self._weights = list(outcomes.values())
        self.time_scale = time_scale
        self.secret = secret
        self.random = random.Random(seed)
        self.tasks: set[asyncio.Task[None]] = set()
        #: Attempts by the receiver's answer ("200", "500", "error"), retries and drops.
        self.stats: Counter[str] = Counter()

    # --- what to send -----------------------------------------------------------------

    def new_batch_id(self) -> str:
        return _batch_id(self.random)

    def accept_batch(self, request: Any, batch_id: str, forced: str | None = None) -> None:
        """Schedule the callbacks of a batch the simulator accepted (201); `request` is the
        parsed send request. A batch without callback_url or with delivery_report none gets none."""
        if not isinstance(request, dict):
            return
        url = request.get("callback_url")
        report = request.get("delivery_report", "none")
        if not isinstance(url, str) or report not in REPORT_TYPES[1:]:
            return
        recipients = [r for r in request.get("to", []) if isinstance(r, str)][:MAX_RECIPIENTS]
        if not recipients:
            return
        try:
            outcome = parse_outcome(forced) if forced else None
        except ValueError:
            outcome = None
        finals = [outcome or self.random.choices(self._outcomes, self._weights)[0] for _ in recipients]
        medium = "mms" if request.get("type") == "mt_media" else "sms"
        reference = request.get("client_reference")
        self._spawn(self._batch(url, report, medium, batch_id, recipients, finals, reference))

    def send_inbound(self, url: str, kind: str = "mo_text", count: int = 1) -> None:
        """Send `count` inbound (MO) messages of `kind` to `url` now (on demand)."""
        for _ in range(max(0, min(count, 10_000))):
            body: dict[str, Any] = {
                "type": kind,
                "id": self.new_batch_id(),
                "from": f"1555{self.random.randrange(10**7):07d}",
                "to": "12345",
                "received_at": _now(),
                "operator_id": "310260",
            }
            if kind == "mo_binary":
                body.update(body="SGVsbG8=", udh="050003010201")
            elif kind == "mo_media":
                media: dict[str, Any] = {"url": "https://example.com/a.jpg", "content_type": "image/jpeg"}
                media.update(status="Uploaded", code=0)
                body["body"] = {"subject": "Hi", "message": "Hello", "media": [media]}
            else:
                body["body"] = "Hello from a handset"
            self._spawn(self._deliver(url, body))

    # --- how it is sent -----------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

    async def _batch(
        self,
        url: str,
        report: str,
        medium: str,
        batch_id: str,
        recipients: Sequence[str],
        finals: Sequence[tuple[str, int]],
        reference: Any,
    ) -> None:
        extra = {"client_reference": reference} if isinstance(reference, str) else {}
        if report in ("summary", "full"):
            await self._sleep(FINAL_AFTER)
            groups: dict[tuple[str, int], list[str]] = {}
            for recipient, final in zip(recipients, finals, strict=True):
                groups.setdefault(final, []).append(recipient)
            statuses = []
            for (status, code), members in groups.items():
                entry: dict[str, Any] = {"code": code, "status": status, "count": len(members)}
                if report == "full":
                    entry["recipients"] = members
                statuses.append(entry)
            body = {
                "type": f"delivery_report_{medium}",
                "batch_id": batch_id,
                "total_message_count": len(recipients),
                "statuses": statuses,
                **extra,
            }
            await self._deliver(url, body)
            return
        kind = f"recipient_delivery_report_{medium}"
        steps: list[tuple[float, int | None]] = [(FINAL_AFTER, None)]
        if report == "per_recipient":
            steps = [(QUEUED_AFTER, 400), (DISPATCHED_AFTER, 401), (FINAL_AFTER, None)]
        elapsed = 0.0
        for after, step_code in steps:
            await self._sleep(after - elapsed)
            elapsed = after
            for recipient, (status, code) in zip(recipients, finals, strict=True):
                if step_code is not None:
                    status, code = ("Queued", 400) if step_code == 400 else ("Dispatched", 401)
                body = {
                    "type": kind,
                    "batch_id": batch_id,
                    "recipient": recipient,
                    "code": code,
                    "status": status,
                    "at": _now(),
                    **extra,
                }
                if step_code is None and status == "Delivered":
                    body["operator_status_at"] = _now()
                # Each report goes (and is retried) on its own, as Sinch's do.
                self._spawn(self._deliver(url, body))

    async def _deliver(self, url: str, document: Mapping[str, Any]) -> None:
        """POST one callback until the receiver accepts or rejects it, on Sinch's schedule."""
        body = json.dumps(document, separators=(",", ":")).encode()
        for attempt in range(RETRIES + 1):
            if attempt:
                self.stats["retries"] += 1
                await self._sleep(RETRY_FIRST * 2 ** (attempt - 1))
            status = await self._post(url, body)
            self.stats[str(status) if status else "error"] += 1
            if status and 200 <= status < 300:
                self.stats["delivered"] += 1
                return
            if status and 400 <= status < 500 and status != 429:
                self.stats["dropped"] += 1  # Sinch does not retry other 4xx
                return
        self.stats["given_up"] += 1

    def _headers(self, body: bytes) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("User-Agent", "sinch-sms-simulator")]
        if self.secret:
            nonce = _batch_id(self.random)
            timestamp = str(int(time.time()))
            headers += [
                ("X-Sinch-Webhook-Signature-Nonce", nonce),
                ("X-Sinch-Webhook-Signature-Timestamp", timestamp),
                ("X-Sinch-Webhook-Signature-Algorithm", "HmacSHA256"),
                ("X-Sinch-Webhook-Signature", sign(self.secret, body, nonce, timestamp)),
            ]
        return headers

    async def _post(self, url: str, body: bytes) -> int | None:
        """The receiver's status, or None when it did not answer."""
        parts = urlsplit(url)
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in self._headers(body)]
        writer = None
        try:
            async with asyncio.timeout(RECEIVER_TIMEOUT):
                reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                await writer.drain()
                status_line = await reader.readline()
                await reader.read()  # the rest, until the receiver closes
            return int(status_line.split(b" ", 2)[1])
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            return None
        finally:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
