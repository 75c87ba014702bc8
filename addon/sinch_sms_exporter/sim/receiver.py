"""A service's callback receiver, for the demo: takes Sinch's callbacks, sometimes fails.

It stands where a real service's webhook endpoint would, behind the sidecar's callback
listener. It answers most callbacks 200 and a share of them 500 (--fail-share), so that the
simulator's retries show in the metrics; `X-Receiver-Answer: STATUS` on a callback forces
its answer (tests). With --secret it checks Sinch's HMAC signature of the raw body and
answers 401 when it does not match, as a careful service would. `GET /stats` answers what
it got as JSON (by type, signature checks); it never logs a body.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import random
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sinch_sms_exporter.sim.callbacks import sign


def _sdk_signature_check() -> Any:
    """Sinch's Python SDK's own signature check (PyPI `sinch`), or None without the SDK."""
    try:
        from sinch.domains.authentication.sinch_events.v1 import authentication_validation
    except ImportError:
        return None
    return authentication_validation.validate_sinch_event_signature_with_nonce


class Receiver:
    def __init__(self, fail_share: float = 0.05, secret: str | None = None, seed: int | None = None) -> None:
        self.fail_share = fail_share
        self.secret = secret
        self.random = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self._sdk_check = _sdk_signature_check() if secret else None

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        """Sinch's signature check (the SDKs' scheme): HMAC-SHA256 of body.nonce.timestamp."""
        signature = headers.get("x-sinch-webhook-signature")
        nonce = headers.get("x-sinch-webhook-signature-nonce")
        timestamp = headers.get("x-sinch-webhook-signature-timestamp")
        if not (self.secret and signature and nonce and timestamp):
            return False
        if self._sdk_check is not None:  # the check a service using Sinch's Python SDK makes
            return bool(self._sdk_check(self.secret, headers, body.decode("utf-8", "replace")))
        return hmac.compare_digest(sign(self.secret, body, nonce, timestamp), signature)

    def answer(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if method == "GET" and path == "/stats":
            return 200, json.dumps(dict(self.stats)).encode()
        if method != "POST":
            return 405, b""
        try:
            kind = json.loads(body).get("type")
        except (ValueError, AttributeError):
            kind = None
        self.stats[f"type:{kind if isinstance(kind, str) else ''}"] += 1
        if self.secret:
            good = self.verify(body, headers)
            self.stats["signature_ok" if good else "signature_bad"] += 1
            if not good:
                return 401, b""
        forced = headers.get("x-receiver-answer", "")
        failing = self.random.random() < self.fail_share
        status = int(forced) if forced.isdigit() else 500 if failing else 200
        self.stats[str(status)] += 1
        return status, b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, answer = self.answer(method, target.split("?", 1)[0], body, headers)
                close = headers.get("connection", "").lower() == "close"
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\n".encode()
                    + (b"Content-Type: application/json\r\n" if answer else b"")
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n"
                    + answer
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def serve(host: str, port: int, receiver: Receiver) -> None:
    server = await asyncio.start_server(receiver.handle, host, port, backlog=1024)
    print(f"callback receiver listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sinch-sms-receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--fail-share", type=float, default=0.05, help="share of callbacks answered 500")
    parser.add_argument("--secret", help="check Sinch's HMAC signature with this secret (401 when wrong)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if not 0 <= args.fail_share <= 1:
        parser.error("--fail-share must be between 0 and 1")
    try:
        asyncio.run(serve(args.host, args.port, Receiver(args.fail_share, args.secret, args.seed)))
    except OSError as exc:
        print(f"sinch-sms-receiver: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
