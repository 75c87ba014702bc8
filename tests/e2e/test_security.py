"""Security, end to end: no secret or personal data in /metrics or the log; /metrics behind
TLS and basic auth, scraped by a real Prometheus; forward mode decrypts Sinch hosts only."""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import http.client as http_client
import io
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from sinch_sms_exporter import cli, exposition, settings
from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.mitm import logredact
from tests.helpers.certs import CA
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import BIN, PROXY, REPO
from tests.helpers.processes import free_port, running, start, start_proxy, start_simulator, wait_for_port, wait_until
from tests.helpers.prometheus import prom_query, start_prometheus
from tests.helpers.servers import serve_connections

pytestmark = pytest.mark.e2e

# --- no secrets in metrics or logs --------------------------------------------------------

TOKEN = "Bearer sk-test-7f3c9a1e5b2d4f60a8c1e9b7d3f5a2c4"
PLAN = "a3f5c8e1d2b4467f9e0c1b2a3d4e5f60"  # service plan ids are 32 hex digits
PHONES = ("+46701234567", "+15557654321", "+4915112345678")
MESSAGE = "Your verification code is 938271, Alice"
IDS = {"batch_id": "01HZSECRETBATCH7Q2K", "group_id": "01HZSECRETGROUPX9M4", "inbound_id": "01HZSECRETINBOUND3V"}
CALLBACK = "https://hooks.example.com/sms/cb?key=cbsecret8821"
CLIENT_REFERENCE = "order-55123-customer-alice"
ANSWERS = (
    "ok",
    "403:blocked_account",
    "gzip:400:syntax_invalid_json",
    "novel:quota_exceeded",
    "garbage",
    "404",
    "429",
    "500",
    "drop",
    "reset",
    "cut",
    "hang",
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def needles() -> set[str]:
    """Every secret, in every form it could take on its way into a log or label."""
    found = {
        TOKEN,
        TOKEN.split()[1],
        PLAN,
        MESSAGE,
        "938271",
        CALLBACK,
        "cbsecret8821",
        CLIENT_REFERENCE,
        *IDS.values(),
    }
    for phone in PHONES:
        found |= {phone, phone[1:], urllib.parse.quote(phone, safe=""), json.dumps(phone)}
    return found


def path_of(template: str, phone: str) -> str:
    segments = [IDS.get(s.strip("{}"), phone) if s.startswith("{") else s for s in template.split("/")]
    return f"/xms/v1/{PLAN}/" + "/".join(segments)


def request_body(phone: str) -> bytes:
    return json.dumps(
        {
            "from": PHONES[2],
            "to": [phone, PHONES[1]],
            "body": MESSAGE,
            "callback_url": CALLBACK,
            "client_reference": CLIENT_REFERENCE,
            "members": [phone],
        }
    ).encode()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes as they are (malformed requests), return what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the proxy sees the end of the request, however incomplete
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def echoing_upstream() -> tuple[socket.socket, int]:
    """An upstream that answers with a malformed status line quoting the request's secrets:
    mitmproxy's protocol-error messages would quote it."""

    def echo(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 2OO {PHONES[0]} {TOKEN}\r\nX-Echo: {MESSAGE}\r\n\r\n".encode())

    server = serve_connections(echo)
    return server, server.getsockname()[1]


def secret_jobs(answers: tuple[str, ...] = ANSWERS) -> list[tuple[str, str, dict[str, str], str]]:
    """(method, path and query, headers, phone) for every endpoint template x answer, each
    carrying the token, phone numbers, ids, a callback URL and a message body."""
    jobs = []
    for t, template in enumerate(labels.ENDPOINT_TEMPLATES):
        for a, answer in enumerate(answers):
            phone = PHONES[(t + a) % len(PHONES)]
            query = f"?to={urllib.parse.quote(phone)}&client_reference={CLIENT_REFERENCE}"
            headers = {"Authorization": TOKEN, "X-Sinch-Sim": answer, "Content-Type": "application/json"}
            if a % 2:
                headers["Accept-Encoding"] = "gzip"
            jobs.append((METHODS[(t + a) % len(METHODS)], path_of(template, phone) + query, headers, phone))
    return jobs


def send_all(jobs, send) -> list[int]:
    """`send(method, path, body, headers)` → status, for every job, 16 at a time."""
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda job: send(job[0], job[1], request_body(job[3]), job[2]), jobs))


def send_malformed(port: int, absolute: str = "") -> None:
    """Malformed requests quote themselves in mitmproxy's messages (`absolute`: the
    scheme://host:port prefix of a forward-proxy request line)."""
    secret_line = f"POST {absolute}{path_of('batches/{batch_id}/delivery_report/{recipient}', PHONES[0])} HTTP/1.1\r\n"
    assert b"400 Bad Request" in raw_exchange(port, f"{secret_line}Authorization {TOKEN}\r\n\r\n".encode())
    assert b"400 Bad Request" in raw_exchange(port, f"{secret_line[:-11]}\x00 {MESSAGE} HTTP/1.1\r\n\r\n".encode())
    raw_exchange(port, secret_line.encode())  # and hang up mid-headers


def expositions(port: int, context: ssl.SSLContext | None = None, authorization: str | None = None) -> list[str]:
    """/metrics (plain and gzip) and / as the scraper sees them."""
    texts = []
    scheme = "https" if context else "http"
    for path, headers in (("/metrics", {}), ("/metrics", {"Accept-Encoding": "gzip"}), ("/", {})):
        if authorization:
            headers = {**headers, "Authorization": authorization}
        request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            body = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            texts.append(body.decode())
    return texts


def assert_no_secrets(texts: list[str], logs: str, secrets: set[str] | None = None) -> None:
    assert "sinch_sms_responses_total" in texts[0] and "sinch_sms_upstream_errors_total" in texts[0]
    for needle in secrets or needles():
        for text in texts:
            assert needle not in text, f"{needle!r} in /metrics"
        assert needle not in logs, f"{needle!r} in the log"


def test_no_secret_reaches_metrics_or_logs_even_at_debug(tmp_path) -> None:
    """Tokens, phone numbers (in bodies, queries and the delivery_report/{recipient} path),
    the service plan id, ids and message bodies, through every endpoint template with
    success, error and fault answers, plus malformed requests and a malformed upstream
    answer: none of it appears in the /metrics exposition or the proxy's log at debug level."""
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp_path)))
        proxy = stack.enter_context(
            running(
                start_proxy(
                    tmp_path, f"http://127.0.0.1:{sim.ports['http']}", "--log-level", "debug", "--upstream-timeout", "1"
                )
            )
        )
        echo_server, echo_port = echoing_upstream()
        stack.callback(echo_server.close)
        echo_proxy = stack.enter_context(
            running(start_proxy(tmp_path, f"http://127.0.0.1:{echo_port}", "--log-level", "debug"))
        )
        listen = proxy.ports["listen"]

        def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
            return http(method, f"http://127.0.0.1:{listen}{path}", body, headers, timeout=30)[0]

        statuses = send_all(secret_jobs(), send)
        assert statuses.count(502) == 4 * len(labels.ENDPOINT_TEMPLATES)  # drop, reset, cut, hang
        send_malformed(listen)
        echo_url = f"http://127.0.0.1:{echo_proxy.ports['listen']}{path_of('batches', PHONES[0])}"
        assert http("POST", echo_url, request_body(PHONES[0]), {"Authorization": TOKEN})[0] == 502
        texts = expositions(proxy.ports["metrics"]) + expositions(echo_proxy.ports["metrics"])
    logs = proxy.log() + echo_proxy.log()  # after the proxies stopped: their shutdown included
    assert "client connect" in logs  # debug level really was on
    assert_no_secrets(texts, logs)


def test_no_secret_reaches_metrics_or_logs_in_forward_mode(tmp_path) -> None:
    """The same secrets through forward mode at debug level: HTTPS to the Sinch stand-in
    intercepted via CONNECT (every template and answer), plain-HTTP absolute-form requests
    (the path, phone numbers included, is in the request line), HTTPS to another host
    tunnelled untouched, and malformed forward-proxy requests."""
    ca = CA(tmp_path / "sinch-ca", "stand-in Sinch CA")
    sinch_cert = ca.issue("sinch", ("127.0.0.1",))
    with ExitStack() as stack:
        sinch = stack.enter_context(
            running(
                start_simulator(
                    tmp_path, "--tls-cert", str(sinch_cert.cert_file), "--tls-key", str(sinch_cert.key_file)
                )
            )
        )
        plain, other = (stack.enter_context(running(start_simulator(tmp_path))) for _ in range(2))
        proxy = stack.enter_context(
            running(
                start_proxy(tmp_path, "https://unused.invalid", "--mode", "forward", "--forward-hosts", r"127\.0\.0\.1",
                            "--upstream-ca", str(ca.cert_file), "--log-level", "debug", "--upstream-timeout", "1")
            )
        )  # fmt: skip
        listen = proxy.ports["listen"]
        mitm_ca = ssl.create_default_context(cafile=str(tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem"))

        def send_https(method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
            conn = http_client.HTTPSConnection("127.0.0.1", listen, timeout=30, context=mitm_ca)
            conn.set_tunnel("127.0.0.1", sinch.ports["http"])
            try:
                conn.request(method, path, body, headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        def send_absolute(method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
            conn = http_client.HTTPConnection("127.0.0.1", listen, timeout=30)
            try:
                conn.request(method, f"http://127.0.0.1:{plain.ports['http']}{path}", body, headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        statuses = send_all(secret_jobs(), send_https)
        assert statuses.count(502) == 4 * len(labels.ENDPOINT_TEMPLATES)  # drop, reset, cut, hang
        absolute = send_all(secret_jobs(("ok", "403:blocked_account", "gzip:400:syntax_invalid_json")), send_absolute)
        assert {400, 403} <= set(absolute) and max(absolute) < 500
        # A host that is not Sinch's: tunnelled (through CONNECT, not decrypted) and not counted.
        tunnelled = http_client.HTTPConnection("127.0.0.1", listen, timeout=30)
        tunnelled.set_tunnel("localhost", other.ports["http"])
        tunnelled.request("POST", path_of("batches", PHONES[1]), request_body(PHONES[1]), {"Authorization": TOKEN})
        assert tunnelled.getresponse().status == 201
        tunnelled.close()
        send_malformed(listen, f"http://127.0.0.1:{plain.ports['http']}")
        texts = expositions(proxy.ports["metrics"])
    logs = proxy.log()
    assert "client connect" in logs  # debug level really was on
    samples = {(f.name, s.labels.get("status")) for f in text_string_to_metric_families(texts[0]) for s in f.samples}
    assert ("sinch_sms_responses", "403") in samples  # intercepted and counted
    assert_no_secrets(texts, logs)


def test_no_secret_reaches_metrics_or_logs_under_mitmdump(tmp_path) -> None:
    """Plain `mitmdump -s` as documented for production (no flow log: `flow_detail=0`), here
    even at its debug log level: the addon puts the same redaction on mitmdump's log."""
    script = subprocess.run([PROXY, "--print-addon-path"], capture_output=True, text=True, check=True).stdout.strip()
    listen, metrics = free_port(), free_port()
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp_path)))
        argv = [
            str(BIN / "mitmdump"), "-s", script, "--set", "flow_detail=0", "--set", "termlog_verbosity=debug",
            "--mode", f"reverse:http://127.0.0.1:{sim.ports['http']}@{listen}", "--set", "listen_host=127.0.0.1",
            "--set", "connection_strategy=lazy",
            "--set", f"sinch_metrics_port={metrics}", "--set", "sinch_metrics_host=127.0.0.1",
            "--set", f"confdir={tmp_path / 'conf'}", "--set", "sinch_upstream_timeout=1",
        ]  # fmt: skip
        mitmdump = stack.enter_context(running(start(argv, tmp_path / "mitmdump.log")))
        wait_for_port(listen, proc=mitmdump.popen)
        wait_for_port(metrics, proc=mitmdump.popen)

        def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
            return http(method, f"http://127.0.0.1:{listen}{path}", body, headers, timeout=30)[0]

        statuses = send_all(secret_jobs(), send)
        assert statuses.count(502) == 4 * len(labels.ENDPOINT_TEMPLATES)  # drop, reset, cut, hang (1 s timeout)
        send_malformed(listen)
        texts = expositions(metrics)
    logs = mitmdump.log()
    assert "client connect" in logs  # debug level really was on
    assert_no_secrets(texts, logs)


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        ("Invalid header line: b'Authorization Bearer x'", (), "Invalid header line: b'<redacted>'"),
        ('%s: Bad HTTP request line: %r', ("127.0.0.1:5", b"POST /xms/v1/p/x\x00 HTTP/1.1"),
         "127.0.0.1:5: Bad HTTP request line: b'<redacted>'"),
        ("data: %r and %r", (b"it's", b'say "hi"'), "data: b'<redacted>' and b'<redacted>'"),
        ("Unexpected data from server: b'a\\'b' end", (), "Unexpected data from server: b'<redacted>' end"),
        ("client connect", (), "client connect"),
        ("%d flows, %s", (3, "ok"), "3 flows, ok"),
    ],
)  # fmt: skip
def test_log_records_quoting_bytes_are_redacted(message: str, args: tuple, expected: str) -> None:
    record = logging.LogRecord("mitmproxy.proxy.server", logging.INFO, __file__, 1, message, args, None)
    assert logredact.RedactBytes().filter(record) is True  # redacted, never dropped
    assert record.getMessage() == expected


# --- /metrics behind TLS and basic auth ---------------------------------------------------------

SCRAPE_USER = "prometheus"
SCRAPE_PASSWORD = "correct horse battery staple 42"


def web_config(tmp: Path) -> tuple[Path, CA, str]:
    """An exporter-toolkit web config (TLS, basic auth; paths relative to the file, a bcrypt
    hash made here): (its path, the CA of its certificate, the hash)."""
    ca = CA(tmp / "pki")
    server = ca.issue("metrics")
    config = tmp / "web" / "web.yml"
    config.parent.mkdir()
    for issued in (server.cert_file, server.key_file):
        (config.parent / issued.name).write_bytes(issued.read_bytes())
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    config.write_text(
        f"tls_server_config:\n  cert_file: {server.cert_file.name}\n  key_file: {server.key_file.name}\n"
        f"basic_auth_users:\n  {SCRAPE_USER}: '{hashed}'\n"
    )
    return config, ca, hashed


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    """A proxy whose /metrics wants TLS and basic auth, with one answer counted."""
    tmp = tmp_path_factory.mktemp("protected")
    config, ca, _ = web_config(tmp)
    with (
        running(start_simulator(tmp)) as sim,
        running(
            start_proxy(tmp, f"http://127.0.0.1:{sim.ports['http']}", "--metrics-web-config", str(config))
        ) as proxy,
    ):
        listen = proxy.ports["listen"]
        assert (
            http("POST", f"http://127.0.0.1:{listen}/xms/v1/PLAN/batches", b"{}", {"X-Sinch-Sim": "blocked_account"})[0]
            == 403
        )
        yield proxy, ca, tmp


def fetch(url: str, context: ssl.SSLContext | None, authorization: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(SCRAPE_USER, "wrong password"),
        basic("someone", SCRAPE_PASSWORD),
        basic(SCRAPE_USER, SCRAPE_PASSWORD + " "),
        basic(SCRAPE_USER, ""),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(SCRAPE_USER.encode()).decode(),  # no colon
        "Bearer " + SCRAPE_PASSWORD,
        basic(SCRAPE_USER, "x" * 100),  # over bcrypt's 72 bytes: bcrypt 5 raises on it
    ],
    ids=[
        "none",
        "wrong-password",
        "unknown-user",
        "trailing-space",
        "empty-password",
        "bad-base64",
        "no-colon",
        "bearer",
        "long-password",
    ],
)
def test_metrics_refuse_missing_or_wrong_credentials(protected, authorization: str | None) -> None:
    proxy, ca, _ = protected
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    status, headers, body = fetch(f"https://127.0.0.1:{proxy.ports['metrics']}/metrics", context, authorization)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert b"sinch_sms" not in body


def test_metrics_answer_the_right_credentials_over_verified_tls(protected) -> None:
    proxy, ca, _ = protected
    url = f"https://127.0.0.1:{proxy.ports['metrics']}/metrics"
    context = ssl.create_default_context(cafile=str(ca.cert_file))  # verifies the chain and the IP
    status, _, body = fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))
    assert status == 200
    samples = {
        (s.name, s.labels.get("code")): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    assert samples[("sinch_sms_responses_total", "blocked_account")] == 1
    # Again: the verified credentials are cached, the answer is the same.
    assert fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))[0] == 200
    # Only TLS is spoken, and only with the configured certificate.
    with pytest.raises((urllib.error.URLError, ConnectionError, http_client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.ports['metrics']}/metrics", timeout=10)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(url, ssl.create_default_context(), basic(SCRAPE_USER, SCRAPE_PASSWORD))


def test_a_flood_of_wrong_passwords_gets_429s_and_starves_no_scrape(protected) -> None:
    """16 clients hammer /metrics with wrong passwords: at most one bcrypt check runs at a
    time, the others get 429 at once; Prometheus's cached credentials still get 200 every
    time, and the proxy keeps proxying."""
    proxy, ca, _ = protected
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    url = f"https://127.0.0.1:{proxy.ports['metrics']}/metrics"
    assert fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))[0] == 200  # cached from here on
    start = threading.Barrier(17)
    answers: list[tuple[int, str | None]] = []

    def attacker(n: int) -> None:
        start.wait(timeout=30)
        for i in range(15):
            status, headers, _ = fetch(url, context, basic(SCRAPE_USER if i % 2 else "nobody", f"guess {n} {i}"))
            answers.append((status, headers.get("Retry-After")))

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    scrapes, proxied = [], []
    while any(thread.is_alive() for thread in threads):
        scrapes.append(fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))[0])
        proxied.append(http("GET", f"http://127.0.0.1:{proxy.ports['listen']}/xms/v1/PLAN/batches")[0])
    for thread in threads:
        thread.join()
    assert len(answers) == 16 * 15
    assert {status for status, _ in answers} == {401, 429}  # both happened, nothing else
    assert {retry for status, retry in answers if status == 429} == {"1"}
    assert scrapes and set(scrapes) == {200}
    assert proxied and set(proxied) == {200}


def test_no_scrape_password_or_secret_reaches_metrics_or_logs_with_tls_and_auth(tmp_path) -> None:
    """The protected proxy at debug level: the traffic secrets as in reverse mode, and the
    scrape credentials every way a client may get them wrong (wrong and near-miss passwords,
    unknown users, the password as a user name or a bearer token, over 72 bytes, a flood that
    gets 429s, plain HTTP to the TLS port, a client that distrusts the certificate): neither
    the password, nor its base64 form, nor its bcrypt hash, nor any guess appears in /metrics
    or the log."""
    config, ca, hashed = web_config(tmp_path)
    guesses = [SCRAPE_PASSWORD + " ", SCRAPE_PASSWORD.upper(), "wrong-guess-5521", "x" * 100]
    attempts = [
        *(basic(SCRAPE_USER, guess) for guess in guesses),
        basic("unknown-user-7731", SCRAPE_PASSWORD),
        basic(SCRAPE_PASSWORD, SCRAPE_PASSWORD),
        f"Bearer {SCRAPE_PASSWORD}",
        f"Basic {SCRAPE_PASSWORD}",  # not base64
    ]
    secrets = needles() | {SCRAPE_PASSWORD, hashed, hashed[7:], *guesses, "unknown-user-7731"}
    secrets |= {a.split(" ", 1)[1] for a in attempts} | {basic(SCRAPE_USER, SCRAPE_PASSWORD).split(" ", 1)[1]}
    with ExitStack() as stack:
        sim = stack.enter_context(running(start_simulator(tmp_path)))
        proxy = stack.enter_context(
            running(
                start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}", "--metrics-web-config", str(config),
                            "--log-level", "debug", "--upstream-timeout", "1")
            )
        )  # fmt: skip
        listen, metrics = proxy.ports["listen"], proxy.ports["metrics"]

        def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
            return http(method, f"http://127.0.0.1:{listen}{path}", body, headers, timeout=30)[0]

        statuses = send_all(secret_jobs(("ok", "403:blocked_account", "reset", "hang")), send)
        assert statuses.count(502) == 2 * len(labels.ENDPOINT_TEMPLATES)
        context = ssl.create_default_context(cafile=str(ca.cert_file))
        url = f"https://127.0.0.1:{metrics}/metrics"
        bodies = []
        for authorization in attempts:
            status, _, body = fetch(url, context, authorization)
            assert status == 401, authorization
            bodies.append(body.decode())
        with ThreadPoolExecutor(8) as pool:  # a flood: 401s and 429s
            flood = list(pool.map(lambda i: fetch(url, context, basic(SCRAPE_USER, f"{guesses[2]}{i}")), range(32)))
        assert {status for status, _, _ in flood} <= {401, 429}
        bodies += [body.decode() for _, _, body in flood]
        secrets |= {f"{guesses[2]}{i}" for i in range(32)}
        right = basic(SCRAPE_USER, SCRAPE_PASSWORD)
        with pytest.raises((urllib.error.URLError, ConnectionError, http_client.HTTPException)):
            plain_http = urllib.request.Request(url.replace("https:", "http:"), headers={"Authorization": right})
            urllib.request.urlopen(plain_http, timeout=10)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(url, ssl.create_default_context(), basic(SCRAPE_USER, SCRAPE_PASSWORD))
        texts = expositions(metrics, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))
        health = fetch(f"https://127.0.0.1:{metrics}/healthz", context)
        assert health[0] == 200
    logs = proxy.log()
    assert "client connect" in logs  # debug level really was on
    assert_no_secrets([*texts, *bodies, health[2].decode()], logs, secrets)


# --- BasicAuth in-process: timing parity, one bcrypt at a time --------------------------------


def wsgi_status(app, authorization: str | None) -> tuple[str, dict[str, str]]:
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=dict(headers))

    list(app({"HTTP_AUTHORIZATION": authorization} if authorization else {}, start_response))
    return seen["status"], seen["headers"]  # type: ignore[return-value]


def metrics_app(environ: dict, start_response) -> list[bytes]:
    start_response("200 OK", [])
    return [b"metrics"]


def test_an_unknown_user_costs_a_bcrypt_check_like_a_known_one(monkeypatch) -> None:
    """Without it, an unknown user's 401 comes back ~bcrypt-time sooner than a wrong
    password's: the answer time would tell which user names exist."""
    users = {"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=6)),
             "grafana": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=5))}  # fmt: skip
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    auth = exposition.BasicAuth(metrics_app, users)
    monkeypatch.setattr(exposition.bcrypt, "checkpw", spy)
    assert wsgi_status(auth, basic("prometheus", "wrong"))[0].startswith("401")
    assert wsgi_status(auth, basic("nobody", "wrong"))[0].startswith("401")
    assert wsgi_status(auth, basic("nobody", "right"))[0].startswith("401")
    assert checked[0] == users["prometheus"]
    # the unknown user: one check against a hash no user has, at the highest cost configured
    assert checked[1] == checked[2] and checked[1] not in users.values()
    assert checked[1].startswith(b"$2b$06$") and len(checked[1]) == len(users["prometheus"])
    # the right password: one check, then cached (no bcrypt at all for the next scrapes)
    assert wsgi_status(auth, basic("grafana", "right"))[0].startswith("200")
    assert wsgi_status(auth, basic("grafana", "right"))[0].startswith("200")
    assert checked[3:] == [users["grafana"]]


def test_one_bcrypt_check_at_a_time_others_get_429_cached_credentials_pass(monkeypatch) -> None:
    users = {"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4))}
    auth = exposition.BasicAuth(metrics_app, users)
    assert wsgi_status(auth, basic("prometheus", "right"))[0] == "200 OK"  # now cached
    real_checkpw = bcrypt.checkpw
    inside, release = threading.Event(), threading.Event()
    running_checks: list[int] = []

    def slow_checkpw(password: bytes, hashed: bytes) -> bool:
        running_checks.append(1)
        inside.set()
        assert release.wait(timeout=30)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(exposition.bcrypt, "checkpw", slow_checkpw)
    first: list[str] = []
    attempt = threading.Thread(target=lambda: first.append(wsgi_status(auth, basic("prometheus", "guess 1"))[0]))
    attempt.start()
    assert inside.wait(timeout=30)  # a check is running (and stays so until released)
    for credentials in (basic("prometheus", "guess 2"), basic("nobody", "guess 3"), basic("prometheus", "righ")):
        status, headers = wsgi_status(auth, credentials)
        assert (status, headers["Retry-After"]) == ("429 Too Many Requests", "1")
    assert wsgi_status(auth, basic("prometheus", "right"))[0] == "200 OK"  # cached: no check needed
    assert wsgi_status(auth, None)[0].startswith("401")  # no credentials: no check either
    release.set()
    attempt.join(timeout=30)
    assert first == ["401 Unauthorized"]
    assert len(running_checks) == 1  # the refused ones never reached bcrypt
    assert wsgi_status(auth, basic("prometheus", "guess 4"))[0].startswith("401")  # free again


def test_passwords_over_72_bytes_compare_like_exporter_toolkit() -> None:
    """bcrypt reads 72 bytes; bcrypt >= 5 raises on more (a 500 per request). Go's bcrypt,
    which exporter-toolkit uses, compares the first 72: so does this."""
    password = "p" * 72
    auth = exposition.BasicAuth(metrics_app, {"u": bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))})
    assert wsgi_status(auth, basic("u", password))[0] == "200 OK"
    assert wsgi_status(auth, basic("u", password + "tail"))[0] == "200 OK"
    assert wsgi_status(auth, basic("u", "q" * 100))[0].startswith("401")
    assert wsgi_status(auth, basic("nobody", "q" * 100))[0].startswith("401")


def test_healthz_needs_no_credentials_and_reveals_nothing(protected) -> None:
    """Kubernetes probes and the image's HEALTHCHECK carry no credentials."""
    proxy, ca, _ = protected
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    status, _, body = fetch(f"https://127.0.0.1:{proxy.ports['metrics']}/healthz", context)
    assert (status, body) == (200, b"ok\n")


def test_a_silent_connection_does_not_stall_scrapes(protected) -> None:
    """A client that opens TCP and never starts TLS (a port scan, a TCP probe, an attacker)
    must not hold up the scrapes behind it."""
    proxy, ca, _ = protected
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    url = f"https://127.0.0.1:{proxy.ports['metrics']}/metrics"
    with socket.create_connection(("127.0.0.1", proxy.ports["metrics"]), timeout=10):
        for _ in range(3):
            assert fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))[0] == 200


def documented_scrape_config() -> dict:
    """The scrape job docs/security.md shows, parsed: the test runs what users copy."""
    text = (REPO / "docs" / "security.md").read_text()
    after = text.split("<!-- scrape-config: tested by tests/e2e/test_security.py -->", 1)[1]
    block = after.split("```yaml\n", 1)[1].split("```", 1)[0]
    return YAML(typ="safe").load(block)


def test_the_readme_shows_the_documented_scrape_job() -> None:
    readme = (REPO / "README.md").read_text().split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert YAML(typ="safe").load(textwrap.dedent(block)) == documented_scrape_config()["scrape_configs"]


def test_a_real_prometheus_scrapes_the_protected_endpoint(protected) -> None:
    proxy, ca, tmp = protected
    # The right credentials cached first (as after any earlier success): the wrong-password
    # job's bcrypt check is then the only one, so it gets its 401, never a 429 for a check
    # that happened to run at the same moment.
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    url = f"https://127.0.0.1:{proxy.ports['metrics']}/metrics"
    assert fetch(url, context, basic(SCRAPE_USER, SCRAPE_PASSWORD))[0] == 200
    doc = documented_scrape_config()
    (job,) = doc["scrape_configs"]
    assert job["scheme"] == "https" and job["basic_auth"]["username"] == SCRAPE_USER
    secrets = tmp / "prometheus-secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "password").write_text(SCRAPE_PASSWORD + "\n")  # Prometheus trims the newline
    (secrets / "wrong").write_text("not the password\n")
    job["basic_auth"]["password_file"] = str(secrets / "password")
    job["tls_config"]["ca_file"] = str(ca.cert_file)
    job["static_configs"] = [{"targets": [f"127.0.0.1:{proxy.ports['metrics']}"]}]
    wrong_password = copy.deepcopy(job) | {"job_name": "wrong-password"}
    wrong_password["basic_auth"]["password_file"] = str(secrets / "wrong")
    untrusted = copy.deepcopy(job) | {"job_name": "untrusted-ca"}
    del untrusted["tls_config"]["ca_file"]
    plain = copy.deepcopy(job) | {"job_name": "plain-http", "scheme": "http"}
    doc = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}}
    doc["scrape_configs"] = [job, wrong_password, untrusted, plain]
    config = io.StringIO()
    YAML(typ="safe").dump(doc, config)

    with running(start_prometheus(tmp, config.getvalue())) as prometheus:
        port = prometheus.ports["http"]
        wait_until(
            lambda: prom_query(port, f'sinch_sms_responses_total{{job="{job["job_name"]}",code="blocked_account"}}')[
                "result"
            ],
            what="the documented job scraped the protected /metrics",
        )

        def target_health() -> dict[str, tuple[str, str]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10) as response:
                targets = json.load(response)["data"]["activeTargets"]
            return {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets if t["health"] != "unknown"}

        health = wait_until(lambda: len(h := target_health()) == 4 and h, what="all four jobs scraped once")
    assert health[job["job_name"]] == ("up", "")
    assert health["wrong-password"][0] == "down" and "401" in health["wrong-password"][1]
    assert health["untrusted-ca"][0] == "down" and "certificate" in health["untrusted-ca"][1]
    assert health["plain-http"][0] == "down"


# --- forward mode: only the Sinch host is decrypted ------------------------------------------


def https_via_proxy(proxy_port: int, host: str, port: int, cafile: str, answer: str) -> tuple[int, bytes]:
    """GET through the proxy with CONNECT, trusting only `cafile`; (status, server cert DER)."""
    context = ssl.create_default_context(cafile=cafile)
    conn = http_client.HTTPSConnection("127.0.0.1", proxy_port, timeout=30, context=context)
    conn.set_tunnel(host, port)
    try:
        conn.request("GET", "/xms/v1/PLAN/batches", headers={"X-Sinch-Sim": answer})
        response = conn.getresponse()
        response.read()
        return response.status, conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


def test_forward_mode_decrypts_only_the_sinch_host(tmp_path) -> None:
    """Two HTTPS upstreams, each with its own CA; --forward-hosts matches one of them.
    The matching host is intercepted (the client sees a certificate from the proxy's CA) and
    counted; the other is tunnelled untouched (the client sees that upstream's own
    certificate, byte for byte) and nothing about it is counted."""
    sinch_ca, other_ca = CA(tmp_path / "sinch-ca", "stand-in Sinch CA"), CA(tmp_path / "other-ca", "another site's CA")
    sinch_cert, other_cert = sinch_ca.issue("sinch", ("127.0.0.1",)), other_ca.issue("other", ("localhost",))
    with ExitStack() as stack:
        sinch, other = (
            stack.enter_context(
                running(start_simulator(tmp_path, "--tls-cert", str(c.cert_file), "--tls-key", str(c.key_file)))
            )
            for c in (sinch_cert, other_cert)
        )
        forward = ["--mode", "forward", "--forward-hosts", r"127\.0\.0\.1", "--upstream-ca", str(sinch_ca.cert_file)]
        proxy = stack.enter_context(running(start_proxy(tmp_path, "https://unused.invalid", *forward)))
        mitm_ca_file = tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem"
        mitm_ca = x509.load_pem_x509_certificate(mitm_ca_file.read_bytes())
        listen = proxy.ports["listen"]

        status, der = https_via_proxy(
            listen, "127.0.0.1", sinch.ports["http"], str(mitm_ca_file), "403:blocked_account"
        )
        intercepted = x509.load_der_x509_certificate(der)
        assert status == 403
        assert intercepted.issuer == mitm_ca.subject  # verified against the proxy's CA only
        assert intercepted != sinch_cert.cert

        for _ in range(3):
            status, der = https_via_proxy(listen, "localhost", other.ports["http"], str(other_ca.cert_file), "429")
            assert status == 429
            assert der == other_cert.cert.public_bytes(serialization.Encoding.DER)  # the upstream's own
        # Trusting only the proxy's CA, the tunnelled host fails verification: nothing was forged.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_via_proxy(listen, "localhost", other.ports["http"], str(mitm_ca_file), "429")

        samples = scrape(proxy.ports["metrics"])
    counted = [
        (name, dict(labels)) for (name, labels), value in samples.items() if name.startswith("sinch_sms_") and value
    ]
    responses = [labels for name, labels in counted if name == "sinch_sms_responses_total"]
    assert responses == [
        {"region": "other", "endpoint": "batches", "method": "GET", "status": "403", "code": "blocked_account"}
    ]
    assert total(samples, "sinch_sms_upstream_errors_total") == 0
    assert total(samples, "sinch_sms_client_aborts_total") == 0
    assert not [labels for name, labels in counted if labels.get("status") == "429"]


# --- safe defaults, as documented -------------------------------------------------------------


def listeners(port: int) -> set[str]:
    """Local addresses listening on `port`, from the kernel's own tables (Linux)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # /proc prints each 32-bit word in host (little-endian) order
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(socket.inet_ntop(family, raw))
    return found


def test_documented_defaults_are_the_real_ones(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(name)
    args = cli.build_parser().parse_args([])
    assert (args.listen_host, args.listen_port) == ("127.0.0.1", 8080)
    assert (args.metrics_host, args.metrics_port) == ("0.0.0.0", 19880)
    assert args.mode == "reverse" and not args.ssl_insecure and args.upstream_ca is None
    assert args.metrics_web_config is None and args.log_level == "info"
    assert args.forward_hosts == routes.SINCH_HOST_PATTERN
    doc = (REPO / "docs" / "security.md").read_text()
    assert "`127.0.0.1:8080`" in doc and "`0.0.0.0:19880`" in doc

    # The running proxy, left at its default listen host, is bound to loopback only.
    if sys.platform != "linux":
        pytest.skip("reads the kernel's socket tables under /proc")
    with (
        running(start_simulator(tmp_path)) as sim,
        running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")) as proxy,
    ):
        assert listeners(proxy.ports["listen"]) == {"127.0.0.1"}


# --- callbacks -------------------------------------------------------------------------------


def callback_bodies() -> list[bytes]:
    """Every callback type, carrying phone numbers, batch ids, client references, message bodies."""
    common = {"batch_id": IDS["batch_id"], "client_reference": CLIENT_REFERENCE}
    bodies = [
        {"type": "recipient_delivery_report_sms", "recipient": PHONES[0], "status": "Failed", "code": 402, **common},
        {"type": "recipient_delivery_report_mms", "recipient": PHONES[1], "status": PHONES[1], "code": 0, **common},
        {
            "type": "delivery_report_sms",
            "statuses": [{"status": "Delivered", "code": 0, "count": 2, "recipients": list(PHONES)}],
            **common,
        },
        {"type": "delivery_report_mms", "statuses": [{"status": MESSAGE, "code": CLIENT_REFERENCE, "count": 1}]},
        {"type": "mo_text", "from": PHONES[2], "to": PHONES[0], "body": MESSAGE, "id": IDS["inbound_id"], **common},
        {"type": "mo_binary", "from": PHONES[2], "to": PHONES[0], "body": MESSAGE, "udh": "050003010201"},
        {"type": "mo_media", "from": PHONES[2], "to": PHONES[0], "body": {"message": MESSAGE}},
        {"type": MESSAGE, "recipient": PHONES[0]},
    ]
    raw = [json.dumps(b).encode() for b in bodies]
    return [*raw, gzip.compress(raw[0]), f"{PHONES[0]} {MESSAGE} not json".encode()]


def test_no_secret_reaches_metrics_or_logs_from_callbacks(tmp_path) -> None:
    """Callbacks of every type full of phone numbers, ids, client references and bodies, sent
    to paths and queries holding them, answered 200, 500 and 400 by a receiver, or by none
    (502): nothing of them reaches /metrics or the proxy's log at debug level."""
    answers = iter(range(10**6))
    receiver = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = receiver.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(65536)
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                status = (200, 500, 400)[next(answers) % 3]
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status)

    threading.Thread(target=serve, daemon=True).start()
    listen, metrics, up, down = free_port(), free_port(), free_port(), free_port()
    argv = [PROXY, "--upstream", f"http://127.0.0.1:{free_port()}", "--region", "us", "--listen-port", str(listen),
            "--metrics-port", str(metrics), "--metrics-host", "127.0.0.1", "--confdir", str(tmp_path / "mitmproxy"),
            "--log-level", "debug", "--callback-listen-host", "127.0.0.1",
            "--callback-upstream", f"http://127.0.0.1:{receiver.getsockname()[1]}@{up}",
            "--callback-upstream", f"http://127.0.0.1:{free_port()}@{down}"]  # fmt: skip
    with running(start(argv, tmp_path / "proxy-callbacks.log")) as proxy:
        for port in (listen, metrics, up, down):
            wait_for_port(port, proc=proxy.popen)
        sent = 0
        for port in (up, down):
            for i, body in enumerate(callback_bodies()):
                path = f"/sms/{IDS['batch_id']}/{urllib.parse.quote(PHONES[i % 3])}?ref={CLIENT_REFERENCE}"
                headers = {"Content-Type": "application/json", "X-Sinch-Webhook-Signature": TOKEN.split()[1],
                           "X-Client-Reference": CLIENT_REFERENCE}  # fmt: skip
                if body[:2] == b"\x1f\x8b":
                    headers["Content-Encoding"] = "gzip"
                status = http("POST", f"http://127.0.0.1:{port}{path}", body, headers)[0]
                assert status in ((200, 500, 400) if port == up else (502,))
                sent += 1
        texts = expositions(metrics)
        samples = scrape(metrics)
    receiver.close()
    assert total(samples, "sinch_sms_callbacks_total") == sent // 2
    assert total(samples, "sinch_sms_callback_errors_total") == sent // 2
    assert total(samples, "sinch_sms_delivery_reports_total") > 0
    logs = proxy.log()
    assert "client connect" in logs
    assert_no_secrets(texts, logs)
