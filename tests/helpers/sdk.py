"""Test support for the real-client tests (Sinch's Python SDK, Apprise) through the real proxy.

- SimServer: the Sinch simulator on a thread of the test process, on plain HTTP and on TLS
  with a certificate for Sinch's real host names, so a test can script its next answers
  (`sim.script`) for clients whose headers it cannot set, and see what arrived (`sim.seen`).
- Forward mode without touching system files: the client uses HTTPS_PROXY and trusts
  mitmproxy's CA (plus the test CA, for the tunnelled auth.sinch.com); the proxy process
  resolves every *.sinch.com name to the TLS simulator through a test-only `sitecustomize`
  on its PYTHONPATH (`resolver_env`). Reverse mode uses the same resolver, so the proxy's
  `--upstream https://zt.eu.sms.api.sinch.com` is Sinch's real host name too.
- Exchanges: every HTTP round trip a client made, recorded at its requests.Session (what the
  client experienced), turned into the metric deltas the proxy must show.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from sinch_sms_exporter.sim.simulator import Simulator
from tests.helpers.certs import CA
from tests.helpers.client import scrape

#: The host names Sinch's clients call: both SMS forms, the OAuth token host.
SINCH_HOSTS = (
    "us.sms.api.sinch.com",
    "eu.sms.api.sinch.com",
    "zt.us.sms.api.sinch.com",
    "zt.eu.sms.api.sinch.com",
    "auth.sinch.com",
    "localhost",
    "127.0.0.1",
)

_RESOLVER = '''"""Test only (tests/helpers/sdk.py): every *.sinch.com name resolves to SINCH_TEST_RESOLVE
(HOST:PORT, the local TLS simulator), whatever port was asked; other names as usual."""
import os
import socket

_target = os.environ.get("SINCH_TEST_RESOLVE")
if _target:
    _host, _, _port = _target.rpartition(":")
    _getaddrinfo = socket.getaddrinfo

    def _sinch_getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and (name.lower() == "sinch.com" or name.lower().endswith(".sinch.com")):
            return _getaddrinfo(_host, int(_port), *args, **kwargs)
        return _getaddrinfo(host, port, *args, **kwargs)

    socket.getaddrinfo = _sinch_getaddrinfo
'''


def resolver_env(tmp: Path, tls_port: int) -> dict[str, str]:
    """Environment for a proxy process whose *.sinch.com lookups reach 127.0.0.1:tls_port."""
    directory = tmp / "sinch-resolver"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_RESOLVER)
    return {"PYTHONPATH": str(directory), "SINCH_TEST_RESOLVE": f"127.0.0.1:{tls_port}"}


class SimServer:
    """The simulator on a thread: one Simulator behind a plain-HTTP and (optionally) a TLS port."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.simulator = Simulator()
        self.ports: dict[str, int] = {}
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="sinch simulator", daemon=True)

    def __enter__(self) -> SimServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        for name, tls in (("http", None), ("tls", self._tls)):
            if name == "tls" and tls is None:
                continue
            server = await asyncio.start_server(self.simulator.handle, "127.0.0.1", 0, ssl=tls)
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        current = asyncio.current_task()
        for task in asyncio.all_tasks():  # connections held by `hang` answers
            if task is not current:
                task.cancel()

    @property
    def script(self):
        return self.simulator.script

    @property
    def seen(self):
        return self.simulator.seen


def tls_context(ca: CA) -> ssl.SSLContext:
    """The simulator's TLS: a certificate for Sinch's host names, signed by the test CA."""
    issued = ca.issue("sinch-hosts", SINCH_HOSTS)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert_file, issued.key_file)
    return context


def ca_bundle(path: Path, *pems: Path) -> Path:
    """One PEM file of several CAs (a client trusting mitmproxy's and the test CA)."""
    path.write_text("".join(p.read_text() for p in pems))
    return path


@dataclass(frozen=True)
class Exchange:
    """One HTTP round trip as the client saw it."""

    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def own_answer_reason(self) -> str | None:
        """The reason of the proxy's own 502 (no upstream answer), else None."""
        match = re.fullmatch(rb"sinch-sms-proxy: [^\n]+ \(reason=([a-z_]+)\)\n", self.body)
        return match.group(1).decode() if self.status == 502 and match else None

    @property
    def code(self) -> str:
        """The `code` of an error answer's JSON body, "" if none (as the metric contract says)."""
        if self.status < 400:
            return ""
        try:
            body = json.loads(self.body)
        except ValueError:
            return ""
        code = body.get("code") if isinstance(body, dict) else None
        return code if isinstance(code, str) else ""


class Recorder:
    """Records every round trip of a requests.Session (the transport Sinch's SDK and Apprise use)."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    def wrap(self, session: requests.Session) -> None:
        send = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
            response = send(method, url, *args, **kwargs)
            self.exchanges.append(
                Exchange(method.upper(), response.url, response.status_code, dict(response.headers), response.content)
            )
            return response

        session.request = request  # type: ignore[method-assign]

    def wrap_every_session(self, monkeypatch: Any) -> None:
        """Record every requests.Session, for clients that call requests.post (Apprise)."""
        send = requests.Session.request

        def request(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
            response = send(session, method, url, *args, **kwargs)
            self.exchanges.append(
                Exchange(method.upper(), response.url, response.status_code, dict(response.headers), response.content)
            )
            return response

        monkeypatch.setattr(requests.Session, "request", request)

    def take(self) -> list[Exchange]:
        taken, self.exchanges = self.exchanges, []
        return taken


ResponseKey = tuple[str, str, str, str, str]  # region, endpoint, method, status, code
ErrorKey = tuple[str, str, str, str]  # region, endpoint, method, reason


def counts(samples: dict) -> tuple[Counter[ResponseKey], Counter[ErrorKey]]:
    """The proxy's two per-answer counters as Counters keyed by their labels."""
    responses: Counter[ResponseKey] = Counter()
    errors: Counter[ErrorKey] = Counter()
    for (name, items), value in samples.items():
        labels = dict(items)
        if name == "sinch_sms_responses_total" and value:
            key = (labels["region"], labels["endpoint"], labels["method"], labels["status"], labels["code"])
            responses[key] = int(value)
        elif name == "sinch_sms_upstream_errors_total" and value:
            errors[(labels["region"], labels["endpoint"], labels["method"], labels["reason"])] = int(value)
    return responses, errors


class MetricsWatch:
    """What the proxy counted since the last look: deltas of both counters."""

    def __init__(self, metrics_port: int) -> None:
        self.port = metrics_port
        self._last = counts(scrape(metrics_port))

    def delta(self) -> tuple[Counter[ResponseKey], Counter[ErrorKey]]:
        now = counts(scrape(self.port))
        changed = (now[0] - self._last[0], now[1] - self._last[1])
        self._last = now
        return changed


def expected(exchanges: list[Exchange], region: str, endpoint: str) -> tuple[Counter[ResponseKey], Counter[ErrorKey]]:
    """The counts a client's SMS API round trips must add: each answer once under its
    status and code, each proxy-made 502 once as an upstream error under its reason."""
    responses: Counter[ResponseKey] = Counter()
    errors: Counter[ErrorKey] = Counter()
    for exchange in exchanges:
        if not exchange.path.startswith("/xms/"):
            continue  # the OAuth token: never through the proxy's counters
        reason = exchange.own_answer_reason
        if reason is not None:
            errors[(region, endpoint, exchange.method, reason)] += 1
        else:
            responses[(region, endpoint, exchange.method, str(exchange.status), exchange.code)] += 1
    return responses, errors
