"""The /metrics endpoint: prometheus_client's WSGI app on its own thread, optionally
behind TLS and HTTP basic auth.

Protection uses the web config file format of Prometheus's exporter-toolkit
(`tls_server_config`, `basic_auth_users` with bcrypt hashes), so the matching Prometheus
`scrape_config` (`scheme: https`, `basic_auth`, `tls_config`) is the one every exporter uses.

Paths: /metrics (the exposition, gzip when asked), /healthz (no auth: probes carry no
credentials; `200 ok`, or `503` and a one-line reason when the health callable the addon
passes in finds the proxy down, or draining on shutdown), / (a link to /metrics).

A scrape served whole (every byte of its body written) is recorded on the metrics' `Counts`:
shutdown waits until the last counts were scraped.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, make_wsgi_app
from ruamel.yaml import YAML

#: Seconds between the metrics server's checks for stop().
_POLL_INTERVAL = 0.05
#: Seconds a client gets to complete the TLS handshake (and send each request) on /metrics.
_TLS_HANDSHAKE_TIMEOUT = 10.0

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True)
class WebConfig:
    """What protects /metrics. Loaded from an exporter-toolkit style YAML file."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    users: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None) -> WebConfig | None:
        """Parse and check a web config file; ValueError/OSError with a readable message."""
        if not path:
            return None
        file = Path(path).expanduser()
        try:
            doc = YAML(typ="safe").load(file.read_text()) or {}
        except OSError as exc:
            raise OSError(f"cannot read metrics web config {path}: {exc.strerror}") from None
        except Exception as exc:  # noqa: BLE001 - ruamel's YAMLError and friends
            raise ValueError(f"metrics web config {path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or set(doc) - {
            "tls_server_config",
            "basic_auth_users",
            "http_server_config",
        }:
            raise ValueError(f"metrics web config {path}: expected the keys tls_server_config and/or basic_auth_users")

        def resolve(value: Any) -> str | None:
            if value is None:
                return None
            resolved = (file.parent / str(value)).resolve()
            if not resolved.is_file():
                raise ValueError(f"metrics web config {path}: {value} does not exist")
            return str(resolved)

        tls = doc.get("tls_server_config") or {}
        users = doc.get("basic_auth_users") or {}
        if not isinstance(tls, dict) or not isinstance(users, dict):
            raise ValueError(f"metrics web config {path}: tls_server_config and basic_auth_users must be maps")
        if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
            raise ValueError(f"metrics web config {path}: tls_server_config needs both cert_file and key_file")
        auth_type = tls.get("client_auth_type", "NoClientCert")
        if auth_type not in _CLIENT_AUTH:
            raise ValueError(f"metrics web config {path}: unknown client_auth_type {auth_type!r}")
        for user, hashed in users.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"metrics web config {path}: the password of {user!r} must be a bcrypt hash")
        return cls(
            cert_file=resolve(tls.get("cert_file")),
            key_file=resolve(tls.get("key_file")),
            client_ca_file=resolve(tls.get("client_ca_file")),
            client_auth_type=auth_type,
            users={str(u): h.encode() for u, h in users.items()},
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cert_file:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file:
            context.load_verify_locations(self.client_ca_file)
        return context


#: bcrypt looks at the first 72 bytes of a password only. bcrypt >= 5 raises on longer ones
#: (a 500 and a traceback per request); exporter-toolkit (Go's bcrypt) compares the first 72.
_BCRYPT_MAX_PASSWORD = 72


def _bcrypt_cost(hashed: bytes) -> int:
    """The cost of a `$2b$NN$…` hash (WebConfig.load checked the prefix)."""
    try:
        return int(hashed[4:6])
    except ValueError:
        return 12


def _dummy_hash(cost: int) -> bytes:
    """A well-formed bcrypt hash of that cost that no password matches in practice: an
    unknown user's password is checked against it, so that it costs as much as a known
    user's (otherwise the answer time tells which user names exist)."""
    return bcrypt.gensalt(rounds=cost) + b"." * 31


class BasicAuth:
    """WSGI middleware: HTTP basic auth against bcrypt hashes.

    bcrypt is slow on purpose (~60 ms at cost 10); like exporter-toolkit:
    - a successful check is cached (keyed by a hash of the credentials, never the
      password), so a scrape every 15 s costs one bcrypt check per process lifetime;
    - an unknown user is checked against a dummy hash of the same cost: the answer time
      does not tell user names apart;
    - at most one bcrypt check runs at a time. exporter-toolkit queues the others behind a
      mutex; here a request that would have to wait gets `429 Too Many Requests` at once:
      a flood of wrong passwords then burns at most one core, never piles up threads
      waiting their turn, and the event loop (the proxy) keeps the other core. Cached
      credentials (Prometheus after its first scrape) never need the check, so they never
      see a 429; an uncached scrape that does retries at its next interval.
    """

    def __init__(self, app: Callable, users: dict[str, bytes]) -> None:
        self.app = app
        self.users = users
        self._dummy = _dummy_hash(max((_bcrypt_cost(h) for h in users.values()), default=10))
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # held while bcrypt runs; never waited for

    def check(self, header: str) -> bool | None:
        """True: these credentials are good. False: they are not. None: another bcrypt
        check is running, so this one was not made (answer 429)."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep:
            return False
        hashed = self.users.get(user)
        secret = password.encode()[:_BCRYPT_MAX_PASSWORD]
        if hashed is not None:
            key = hashlib.sha256(b"\0".join((user.encode(), secret, hashed))).digest()
            with self._lock:
                if key in self._verified:
                    return True
        if not self._checking.acquire(blocking=False):
            return None
        try:
            matched = bcrypt.checkpw(secret, hashed if hashed is not None else self._dummy)
        except ValueError:  # a hash bcrypt cannot read: no password matches it
            matched = False
        finally:
            self._checking.release()
        if not matched or hashed is None:
            return False
        with self._lock:
            self._verified.add(key)
        return True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        verdict = self.check(environ.get("HTTP_AUTHORIZATION", ""))
        if verdict:
            return self.app(environ, start_response)
        if verdict is None:
            start_response("429 Too Many Requests", [("Retry-After", "1"), ("Content-Type", "text/plain")])
            return [b"Too Many Requests: another password check is running, retry\n"]
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="sinch-sms-exporter"'), ("Content-Type", "text/plain")],
        )
        return [b"Unauthorized\n"]


class Counts(Protocol):
    """The metrics' record of what was scraped (sinch_sms_exporter.metrics.Metrics)."""

    recorded: int  # counts recorded so far
    scraped: int | None  # `recorded` as of the start of the last scrape served whole


_SCRAPED_LOCK = threading.Lock()


class _ScrapeBody:
    """A scrape's body that records the scrape once the server has written all of it: the
    server asks for the next block only after writing the last one, and never does if a
    write failed (the scraper went away), so a scrape cut short is not recorded."""

    def __init__(self, body: list[bytes], counts: Counts, seen: int) -> None:
        self.body, self.counts, self.seen = body, counts, seen

    def __len__(self) -> int:  # wsgiref sets Content-Length for a one-block body
        return len(self.body)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.body
        with _SCRAPED_LOCK:  # scrapes end on threads of their own: `scraped` only moves forward
            scraped = self.counts.scraped
            if scraped is None or scraped < self.seen:
                self.counts.scraped = self.seen


def _recording_scrapes(metrics_app: Callable, counts: Counts) -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        # Read before the exposition is rendered: every count up to `seen` is in it.
        seen = counts.recorded
        body = metrics_app(environ, start_response)
        whole = environ.get("REQUEST_METHOD") == "GET" and "name[]" not in parse_qs(environ.get("QUERY_STRING", ""))
        return _ScrapeBody(body, counts, seen) if whole and isinstance(body, list) else body

    return app


#: What /healthz runs: None when healthy, else a one-line reason (answered with a 503).
HealthCheck = Callable[[], str | None]


def _health_answer(health: HealthCheck | None) -> tuple[str, bytes]:
    if health is None:
        return "200 OK", b"ok\n"
    try:
        problem = health()
    except Exception as exc:  # noqa: BLE001 - a broken check is an unhealthy answer, not a 500
        problem = f"the health check failed ({type(exc).__name__})"
    if problem is None:
        return "200 OK", b"ok\n"
    line = " ".join(str(problem).split()) or "unhealthy"
    return "503 Service Unavailable", f"{line}\n".encode(errors="replace")


def _router(metrics_app: Callable, health: HealthCheck | None) -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            status, body = _health_answer(health)
            start_response(status, [("Content-Type", "text/plain"), ("Cache-Control", "no-store")])
            return [body]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html")])
            return [b'<html><body><h1>sinch-sms-exporter</h1><a href="/metrics">/metrics</a></body></html>\n']
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """No access log: scrapes every 15 s would drown the proxy's own log."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake here, in the connection's own thread. (On a wrapped listening socket
        it would run in accept(): one client that connects and sends nothing, a port scan or
        a TCP probe, would stall every scrape behind it.)"""
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_TLS_HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError, timeouts, resets: that client's problem only
            return
        with tls:
            super().finish_request(tls, client_address)


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running /metrics endpoint; `stop()` frees its port."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, registry: CollectorRegistry, scheme: str) -> None:
        self.httpd = httpd
        self.thread = thread
        self.registry = registry
        host, port = str(httpd.server_address[0]), int(httpd.server_address[1])
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    @classmethod
    def start(
        cls,
        registry: CollectorRegistry,
        host: str,
        port: int,
        config: WebConfig | None,
        health: HealthCheck | None = None,
        counts: Counts | None = None,
    ) -> MetricsServer:
        """Serve on host:port (OSError if it cannot listen). `health` answers /healthz,
        in the request's thread (None: always `ok`); `counts` records each whole scrape."""
        metrics_app = make_wsgi_app(registry)
        if counts is not None:
            metrics_app = _recording_scrapes(metrics_app, counts)
        if config is not None and config.users:
            # Only /metrics reveals anything; /healthz stays open for probes without credentials.
            metrics_app = BasicAuth(metrics_app, config.users)
        app = _router(metrics_app, health)
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        httpd = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        context = config.ssl_context() if config is not None else None
        httpd.ssl_context = context
        # stop() waits for the serving loop to notice, up to one poll interval: the exit delay
        # after the last scrape on shutdown (socketserver's default is 0.5 s).
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL}, name="sinch metrics", daemon=True
        )
        thread.start()
        return cls(httpd, thread, registry, "https" if context else "http")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
