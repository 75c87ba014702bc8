"""The /metrics endpoint: prometheus_client's WSGI app on its own thread, optionally
behind TLS and HTTP basic auth.

Protection uses the web config file format of Prometheus's exporter-toolkit
(`tls_server_config`, `basic_auth_users` with bcrypt hashes), so the matching Prometheus
`scrape_config` (`scheme: https`, `basic_auth`, `tls_config`) is the one every exporter uses.

Paths: /metrics (the exposition, gzip when asked), /healthz (no auth: probes carry no
credentials; `200 ok`, or `503` and a one-line reason when the health callable the addon
passes in finds the proxy down), / (a link to /metrics).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
from prometheus_client import CollectorRegistry, make_wsgi_app
from ruamel.yaml import YAML

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


class BasicAuth:
    """WSGI middleware: HTTP basic auth against bcrypt hashes.

    bcrypt is slow on purpose (~0.1 s); like exporter-toolkit, a successful check is
    cached (keyed by a hash of the credentials, never the password) so that a scrape every
    15 s does not burn CPU.
    """

    def __init__(self, app: Callable, users: dict[str, bytes]) -> None:
        self.app = app
        self.users = users
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            if any(hmac.compare_digest(key, k) for k in self._verified):
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(key)
        return True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="sinch-sms-exporter"'), ("Content-Type", "text/plain")],
        )
        return [b"Unauthorized\n"]


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
        host, port = httpd.server_address[:2]
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    @classmethod
    def start(
        cls,
        registry: CollectorRegistry,
        host: str,
        port: int,
        config: WebConfig | None,
        health: HealthCheck | None = None,
    ) -> MetricsServer:
        """Serve on host:port (OSError if it cannot listen). `health` answers /healthz,
        in the request's thread (None: always `ok`)."""
        metrics_app = make_wsgi_app(registry)
        if config is not None and config.users:
            # Only /metrics reveals anything; /healthz stays open for probes without credentials.
            metrics_app = BasicAuth(metrics_app, config.users)
        app = _router(metrics_app, health)
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        httpd = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        context = config.ssl_context() if config is not None else None
        httpd.ssl_context = context
        thread = threading.Thread(target=httpd.serve_forever, name="sinch metrics", daemon=True)
        thread.start()
        return cls(httpd, thread, registry, "https" if context else "http")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
