"""A Sinch SMS REST API simulator: the catalog's answers, and the faults of a real network.

It speaks the API's shape for the endpoints of the metric contract and answers every
status and code of the catalog with the documented bodies ({"code","text"} JSON for
400/403, no body for 404, …). The demo, the tests and the benchmarks put it behind the
proxy; it shares only the catalog with the product, it is not a mock of the proxy.

What it answers is chosen, in this order, by
1. the request header `X-Sinch-Sim: ANSWER` or the query parameter `sim=ANSWER` (tests);
2. the path: one outside the API's endpoints gets 404 with no body, as from the real API;
3. the simulator's script: answers queued for the next requests (`Simulator.script`, for
   clients whose headers a test cannot set, such as Sinch's SDKs);
4. a weighted scenario (`--scenario demo`, for the demo and benchmarks);
5. the realistic success of the endpoint (201 for POST /batches, 202 for delivery feedback,
   pages of `page_size` for lists, …), in the shape Sinch's SDKs deserialize.

Paths may carry a service plan ID (`{region}.sms.api.sinch.com`) or a project ID
(`zt.{region}.sms.api.sinch.com`): `/xms/v1/{id}/…` either way. `POST /oauth2/token` with
Basic credentials answers an OAuth access token (auth.sinch.com's shape), for project auth.

ANSWER is a status (`429`), a status and code (`403:blocked_account`), a code alone
(`blocked_account`), or one of: `ok`, `big` (a 2 MiB success list), `novel:CODE`
(a 400 with a code outside the catalog), `garbage` (a 403 whose body is not JSON), `expired`
(a 401 whose WWW-Authenticate says the OAuth token expired), `html503` (a 503 with an HTML
page, as from a load balancer), and the
faults `drop` (close without answering), `reset` (TCP RST), `cut` (headers and half the
body, then close), `malformed` (a line that is not HTTP, then close), `hang` (never answer),
`slow:SECONDS` (answer late). Modifiers go first:
`gzip:`, `br:`, `zstd:`, `deflate:` (encode the body), `chunked:` (no Content-Length),
e.g. `gzip:chunked:403:missing_callback_url`.

Callbacks (sim/callbacks.py): a batch accepted with a `callback_url` and a `delivery_report`
other than `none` gets its delivery reports later, as from Sinch (retries, optional HMAC
signature: --callback-secret); `X-Sinch-Sim-Delivery: Failed:402` on the send request forces
every recipient's outcome. Two paths outside the API drive and show them:
`POST /_sim/inbound` with {"url": …, "type": "mo_text", "count": 1} sends inbound messages
now; `GET /_sim/callbacks` answers the callback counts (attempts by the receiver's answer,
retries, drops) as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import json
import random
import signal
import socket
import ssl
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import brotli
import zstandard

from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.contract import catalog, labels
from sinch_sms_exporter.sim import callbacks

FAULTS = ("drop", "reset", "cut", "malformed", "hang")
ENCODINGS = ("gzip", "br", "zstd", "deflate")
#: The demo's answer weights: mostly success, every catalog answer now and then, a few faults.
DEMO_SCENARIO: dict[str, float] = {
    "ok": 80.0,
    **{f"{c.status}:{c.code}": 1.0 for c in catalog.CODES.values()},
    "403:blocked_account": 0.3,
    "401": 1.0,
    "404": 2.0,
    "405": 0.5,
    "415": 0.5,
    "429": 3.0,
    "500": 1.0,
    "503": 1.0,
    "gzip:400:syntax_invalid_parameter_format": 0.5,
    "slow:0.8": 0.5,
    "drop": 0.3,
}
#: Every answer of the catalog once (for exhaustive tests and the demo's first round).
CATALOG_ANSWERS: tuple[str, ...] = (
    "ok",
    *(f"{c.status}:{c.code}" for c in catalog.CODES.values()),
    *(str(s.status) for s in catalog.STATUSES.values() if s.body != "json_code" and s.status >= 202),
)
SCENARIOS = {"demo": DEMO_SCENARIO, "success": {"ok": 1.0}, "blocked": {"403:blocked_account": 1.0}}


class BadAnswer(ValueError):
    pass


@dataclass
class Answer:
    """What to send back: a status, headers, a body, or a fault."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    encoding: str | None = None
    chunked: bool = False
    fault: str | None = None
    delay: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)


def _error_json(code: str, text: str) -> bytes:
    return json.dumps({"code": code, "text": text}).encode()


_STAMP = "2026-11-23T10:00:00.000Z"
_BATCH_ID = "01FC66621XXXXX119Z8PMV1QPQ"
_GROUP_ID = "01FC66621VHDBN119Z8PMV1AHY"
_NUMBER = "15551231234"
#: Items in every simulated list (so that paging with page_size < 3 takes several pages).
LIST_TOTAL = 3


def _batch(canceled: bool = False) -> dict:
    return {
        "id": _BATCH_ID,
        "to": [_NUMBER],
        "from": "12345",
        "body": "Hello",
        "type": "mt_text",
        "canceled": canceled,
        "delivery_report": "none",
        "created_at": _STAMP,
        "modified_at": _STAMP,
        "expire_at": "2026-11-26T10:00:00.000Z",
        "flash_message": False,
    }


def _group() -> dict:
    return {"id": _GROUP_ID, "name": "Group", "size": 2, "created_at": _STAMP, "modified_at": _STAMP}


def _recipient_report() -> dict:
    return {
        "at": _STAMP,
        "batch_id": _BATCH_ID,
        "code": 0,
        "recipient": _NUMBER,
        "status": "Delivered",
        "type": "recipient_delivery_report_sms",
    }


def _inbound() -> dict:
    return {
        "type": "mo_text",
        "id": "01FC66621XXXXX119Z8PMV1INB",
        "from": _NUMBER,
        "to": "12345",
        "body": "Hi",
        "received_at": _STAMP,
    }


#: What a list endpoint lists: its JSON key and one item.
_LISTS = {
    "batches": ("batches", _batch),
    "groups": ("groups", _group),
    "inbounds": ("inbounds", _inbound),
    "delivery_reports": ("delivery_reports", _recipient_report),
}


def _page(endpoint: str, query: dict[str, list[str]]) -> dict:
    """One page of a list, as the API pages: `page` (from 0) and `page_size` of the request,
    `count` of all items, `page_size` of the answer = items on this page."""
    key, item = _LISTS[endpoint]

    def number(name: str, default: int) -> int:
        try:
            return max(int((query.get(name) or [str(default)])[0]), 0)
        except ValueError:
            return default

    page, size = number("page", 0), number("page_size", 30) or 30
    on_page = max(min(size, LIST_TOTAL - page * size), 0)
    return {"count": LIST_TOTAL, "page": page, "page_size": on_page, key: [item() for _ in range(on_page)]}


def _success(method: str, endpoint: str, query: dict[str, list[str]] | None = None) -> tuple[int, bytes]:
    """A realistic success of an endpoint (ids and numbers are fake), in the shape the API
    documents and Sinch's SDKs deserialize: 201 for what POST creates, 202 (no body) for
    delivery feedback, pages for lists."""
    if method == "POST" and endpoint in ("batches", "groups"):
        return 201, json.dumps(_batch() if endpoint == "batches" else _group()).encode()
    if method == "GET" and endpoint in _LISTS:
        return 200, json.dumps(_page(endpoint, query or {})).encode()
    if endpoint == "batches/dry_run":
        per_recipient = [{"recipient": _NUMBER, "number_of_parts": 1, "body": "Hello", "encoding": "text"}]
        return 200, json.dumps(
            {"number_of_recipients": 1, "number_of_messages": 1, "per_recipient": per_recipient}
        ).encode()
    if endpoint == "batches/{batch_id}/delivery_feedback":
        return 202, b""
    if endpoint == "batches/{batch_id}/delivery_report":
        statuses = [{"code": 0, "count": 1, "status": "Delivered", "recipients": [_NUMBER]}]
        report = {"batch_id": _BATCH_ID, "statuses": statuses, "total_message_count": 1, "type": "delivery_report_sms"}
        return 200, json.dumps(report).encode()
    if endpoint == "batches/{batch_id}/delivery_report/{recipient}":
        return 200, json.dumps(_recipient_report()).encode()
    if endpoint == "groups/{group_id}":
        return 200, (b"" if method == "DELETE" else json.dumps(_group()).encode())
    if endpoint == "groups/{group_id}/members":
        return 200, json.dumps([_NUMBER, "15551231235"]).encode()
    if endpoint == "inbounds/{inbound_id}":
        return 200, json.dumps(_inbound()).encode()
    return 200, json.dumps(_batch(canceled=method == "DELETE")).encode()


def parse_answer(
    spec: str, method: str = "GET", endpoint: str = "batches", query: dict[str, list[str]] | None = None
) -> Answer:
    """Turn an ANSWER spec into an Answer; BadAnswer with a readable message if unknown."""
    answer = Answer()
    parts = spec.strip().split(":")
    while parts and parts[0] in (*ENCODINGS, "chunked"):
        head = parts.pop(0)
        if head == "chunked":
            answer.chunked = True
        else:
            answer.encoding = head
    if not parts or not parts[0]:
        raise BadAnswer(f"empty answer in {spec!r}")
    head, rest = parts[0], parts[1:]
    if head in FAULTS:
        answer.fault = head
        answer.status, answer.body = _success(method, endpoint, query)
    elif head == "slow":
        try:
            answer.delay = float(rest[0])
        except (IndexError, ValueError):
            raise BadAnswer(f"slow needs seconds, e.g. slow:0.5 (got {spec!r})") from None
        answer.status, answer.body = _success(method, endpoint, query)
    elif head == "ok":
        answer.status, answer.body = _success(method, endpoint, query)
    elif head == "big":
        item = {"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": ["15551231234"], "body": "x" * 200}
        answer.body = json.dumps({"count": 8000, "batches": [item] * 8000}).encode()
    elif head == "novel":
        if not rest:
            raise BadAnswer("novel needs a code, e.g. novel:quota_exceeded")
        answer.status, answer.body = 400, _error_json(":".join(rest), "A code the catalog does not know.")
    elif head == "expired":
        # An expired OAuth access token, as Sinch's SDKs recognise it: they fetch a new token and retry.
        # No body: what a gateway sends with its challenge (and what the SDKs can renew on; a
        # text body would end Sinch's Python SDK with a JSON error before it looks at the header).
        answer.status, answer.body, answer.content_type = 401, b"", None
        answer.headers.append(("WWW-Authenticate", 'Bearer error="invalid_token", error_description="expired"'))
    elif head == "html503":
        page = b"<html><head><title>503 Service Unavailable</title></head><body>Try again later.</body></html>"
        answer.status, answer.body, answer.content_type = 503, page, "text/html"
    elif head == "garbage":
        answer.status, answer.body, answer.content_type = 403, b"<html>Forbidden</html>", "text/html"
    elif head in catalog.CODES:
        code_info = catalog.CODES[head]
        answer.status, answer.body = code_info.status, _error_json(code_info.code, code_info.text)
    elif head.isdigit():
        answer.status = int(head)
        info = catalog.STATUSES.get(answer.status)
        if rest:
            code = rest[0]
            known = catalog.CODES.get(code)
            answer.body = _error_json(code, known.text if known else "Simulated error.")
        elif info is not None and info.body == "resource":
            answer.body = _success(method, endpoint, query)[1]
        elif (info is not None and info.body == "none") or answer.status in (204, 304):
            answer.body, answer.content_type = b"", None
        else:
            phrase = HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else ""
            answer.body, answer.content_type = f"{answer.status} {phrase}\n".encode(), "text/plain"
        if answer.status == 429:
            answer.headers.append(("Retry-After", "1"))
        if answer.status == 401:
            answer.headers.append(("WWW-Authenticate", 'Bearer realm="sinch"'))
    else:
        raise BadAnswer(f"unknown answer {spec!r} (see `sinch-sms-simulator --help`)")
    if not 100 <= answer.status <= 999:
        raise BadAnswer(f"status {answer.status} is not an HTTP status")
    return answer


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "br":
        return brotli.compress(body)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(body)
    return zlib.compress(body)  # deflate


#: auth.sinch.com's token path (project auth: Basic key_id:key_secret → a Bearer token).
OAUTH_TOKEN_PATH = "/oauth2/token"


@dataclass(frozen=True)
class Seen:
    """One request the simulator got (tests compare it with what the client meant to send)."""

    method: str
    path: str
    host: str
    authorization: str
    answer: int


class Simulator:
    """An asyncio HTTP/1.1 server (keep-alive, optional TLS) answering like the Sinch SMS API."""

    def __init__(
        self,
        scenario: dict[str, float] | None = None,
        seed: int | None = None,
        sender: callbacks.CallbackSender | None = None,
    ) -> None:
        self.scenario = scenario
        self.sender = sender or callbacks.CallbackSender(seed=seed)
        self.random = random.Random(seed)
        if scenario:
            self._choices = list(scenario)
            self._weights = list(scenario.values())
        self.served = 0
        #: Open client connections, closed at shutdown rather than waited for.
        self.connections: set[asyncio.StreamWriter] = set()
        #: ANSWER specs for the next API requests, first in first out (appended by tests).
        self.script: collections.deque[str] = collections.deque()
        #: Every request, in order (bounded: the demo runs for hours).
        self.seen: collections.deque[Seen] = collections.deque(maxlen=10_000)
        self.tokens_issued = 0

    def choose(self, request_spec: str | None, endpoint: str = "batches") -> str:
        """The ANSWER spec for one request: its own choice, else 404 for a path outside the API
        (the real API answers an invalid path so, whatever else happens), else the script's
        next answer, else the scenario's."""
        if request_spec:
            return request_spec
        if endpoint == labels.OTHER:
            return "404"
        if self.script:
            with contextlib.suppress(IndexError):  # emptied by another connection meanwhile
                return self.script.popleft()
        if self.scenario:
            return self.random.choices(self._choices, self._weights)[0]
        return "ok"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # the server shuts down (a test's in-process simulator)
            pass
        finally:
            self.connections.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = b""
        if length:
            body = await reader.readexactly(length)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)

        url = urlsplit(target)
        if url.path.startswith("/_sim/"):
            answer = self._control(method, url.path, body)
        else:
            query = parse_qs(url.query)
            spec = headers.get("x-sinch-sim") or next(iter(query.get("sim") or ()), None)
            endpoint = routes.endpoint_of(url.path)
            if url.path == OAUTH_TOKEN_PATH and method == "POST" and not spec:
                answer = self._token(headers.get("authorization", ""))
            else:
                try:
                    answer = parse_answer(self.choose(spec, endpoint), method, endpoint, query)
                except BadAnswer as exc:
                    answer = Answer(status=599, body=f"simulator: {exc}\n".encode(), content_type="text/plain")
                if method == "POST" and endpoint == "batches" and answer.status == 201 and not answer.fault:
                    self._accepted(answer, body, headers.get("x-sinch-sim-delivery"))
        self.served += 1
        self.seen.append(
            Seen(method, url.path, headers.get("host", ""), headers.get("authorization", ""), answer.status)
        )
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        return await self._send(writer, answer, keep_alive, head_only=method == "HEAD")

    def _accepted(self, answer: Answer, body: bytes, forced: str | None) -> None:
        """A batch was accepted: give it its own id and schedule its callbacks."""
        try:
            request = json.loads(body)
        except ValueError:
            return
        batch_id = self.sender.new_batch_id()
        if isinstance(request, dict) and isinstance(request.get("callback_url"), str):
            # Only batches that ask for callbacks pay for a fresh body (the hot path of benches).
            created = json.loads(answer.body)
            created.update(id=batch_id, to=request.get("to", []), delivery_report=request.get("delivery_report"))
            answer.body = json.dumps(created).encode()
        self.sender.accept_batch(request, batch_id, forced)

    def _control(self, method: str, path: str, body: bytes) -> Answer:
        """/_sim/inbound (POST: send inbound messages now) and /_sim/callbacks (GET: counts)."""
        if path == "/_sim/callbacks" and method == "GET":
            return Answer(200, json.dumps(dict(self.sender.stats)).encode())
        if path == "/_sim/inbound" and method == "POST":
            try:
                order = json.loads(body)
                kind = order.get("type", "mo_text")
                if kind not in labels.INBOUND_TYPES or not isinstance(order["url"], str):
                    raise ValueError
                self.sender.send_inbound(order["url"], kind, int(order.get("count", 1)))
            except (ValueError, KeyError, TypeError, AttributeError):
                message = b'{"text":"expected a JSON object: url, type (mo_text, mo_binary, mo_media), count"}'
                return Answer(400, message)
            return Answer(202, b"")
        return Answer(404, b"", content_type=None)

    async def _send(self, writer: asyncio.StreamWriter, answer: Answer, keep_alive: bool, head_only: bool) -> bool:
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.fault == "hang":
            await asyncio.Event().wait()
        if answer.fault == "drop":
            return False
        if answer.fault == "malformed":
            writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n")
            await writer.drain()
            return False
        if answer.fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        body = answer.body
        headers = [("Date", formatdate(usegmt=True)), ("Server", "sinch-sms-simulator")]
        if answer.content_type and body:
            headers.append(("Content-Type", answer.content_type))
        if answer.encoding and body:
            body = _encode(body, answer.encoding)
            headers.append(("Content-Encoding", answer.encoding))
        headers.extend(answer.headers)
        if answer.fault == "cut":
            headers.append(("Content-Length", str(len(body) + 100)))
        elif answer.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(len(body))))
        if not keep_alive:
            headers.append(("Connection", "close"))
        phrase = HTTPStatus(answer.status).phrase if answer.status in HTTPStatus._value2member_map_ else "Unknown"
        out = [f"HTTP/1.1 {answer.status} {phrase}\r\n".encode()]
        out += [f"{k}: {v}\r\n".encode() for k, v in headers]
        out.append(b"\r\n")
        if head_only:
            pass
        elif answer.fault == "cut":
            out.append(body[: len(body) // 2])
        elif answer.chunked:
            for start in range(0, len(body), 4096):
                piece = body[start : start + 4096]
                out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            out.append(b"0\r\n\r\n")
        else:
            out.append(body)
        writer.write(b"".join(out))
        await writer.drain()
        return keep_alive and answer.fault != "cut"

    def _token(self, authorization: str) -> Answer:
        """auth.sinch.com's client-credentials grant: a fresh token for Basic credentials."""
        if not authorization.startswith("Basic "):
            body = {"error": "invalid_client", "error_description": "Client authentication failed."}
            return Answer(status=401, body=json.dumps(body).encode())
        self.tokens_issued += 1
        token = {
            "access_token": f"sim-access-token-{self.tokens_issued}",
            "expires_in": 3599,
            "scope": "",
            "token_type": "bearer",
        }
        return Answer(status=200, body=json.dumps(token).encode())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return bytes(body)
        body += (await reader.readexactly(size + 2))[:-2]


async def serve(host: str, port: int, simulator: Simulator, tls: ssl.SSLContext | None = None) -> None:
    server = await asyncio.start_server(simulator.handle, host, port, ssl=tls, backlog=1024)
    bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
    print(f"sinch-sms-simulator listening on {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stop now: no new connections, and the open ones (idle keep-alive, a `hang` or `slow:`
    # answer) are cut rather than waited for (Python 3.12's wait_closed would wait for them).
    server.close()
    for writer in list(simulator.connections):
        writer.transport.abort()
    await server.wait_closed()
    # asyncio.run() then cancels the handlers still sleeping; Python 3.11's stream callback
    # logs each cancelled handler as an "Exception in callback" traceback. Those
    # cancellations are the shutdown itself, not errors.
    loop.set_exception_handler(_ignore_cancellations)


def _ignore_cancellations(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sinch-sms-simulator",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9800)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="weighted answers for unscripted requests")
    parser.add_argument("--seed", type=int, help="random seed of the scenario (repeatable runs)")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM")
    parser.add_argument(
        "--delivery-scenario",
        choices=sorted(callbacks.OUTCOMES),
        default="demo",
        help="final delivery outcomes of accepted batches' messages (failing: an operator outage)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies every callback delay: delivery (3 s) and Sinch's retries (5 s, 10 s, …); 0.01 for tests",
    )
    parser.add_argument("--callback-secret", help="sign callbacks with this HMAC secret (X-Sinch-Webhook-Signature)")
    args = parser.parse_args(argv)
    if args.time_scale < 0:
        parser.error("--time-scale must be 0 or more")
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"sinch-sms-simulator: error: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    sender = callbacks.CallbackSender(
        callbacks.OUTCOMES[args.delivery_scenario],
        time_scale=args.time_scale,
        secret=args.callback_secret,
        seed=args.seed,
    )
    simulator = Simulator(SCENARIOS.get(args.scenario) if args.scenario else None, args.seed, sender)
    try:
        asyncio.run(serve(args.host, args.port, simulator, tls))
    except OSError as exc:
        print(
            f"sinch-sms-simulator: error: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
