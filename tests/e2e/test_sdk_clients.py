"""Sinch's own Python SDK (PyPI `sinch`) through the real `sinch-sms-proxy`, call by call.

Reverse mode (the SDK's base URL points at the proxy) and forward mode (the SDK keeps its
default hosts and uses the proxy as HTTPS_PROXY), each with service-plan auth
({region}.sms.api.sinch.com) and project auth (OAuth, zt.{region}.sms.api.sinch.com). Every
SMS call the SDK has and the error answers a service meets; after each call the proxy's
counters must have grown by exactly what the SDK experienced (every round trip it made,
recorded at its HTTP session), by region, endpoint, method, status and code.

Sinch's real host names reach a local TLS simulator through a test-only resolver in the proxy
process (tests/helpers/sdk.py): no system file is touched.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sinch import SinchClient
from sinch.core.exceptions import SinchException

from sinch_sms_exporter.contract import catalog
from tests.helpers.certs import CA
from tests.helpers.processes import Process, free_port, running, start_proxy
from tests.helpers.sdk import (
    Exchange,
    MetricsWatch,
    Recorder,
    SimServer,
    ca_bundle,
    expected,
    resolver_env,
    tls_context,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BATCH = "01FC66621XXXXX119Z8PMV1QPQ"
GROUP = "01FC66621VHDBN119Z8PMV1AHY"
INBOUND = "01FC66621XXXXX119Z8PMV1INB"
TO = "+15551231234"
FROM = "+15550002222"
PLAN, TOKEN = "TESTPLAN123", "TESTTOKEN"
PROJECT, KEY_ID, KEY_SECRET = "TESTPROJECT", "TESTKEYID", "TESTKEYSECRET"


@dataclass(frozen=True)
class Stack:
    sim: SimServer
    ca: CA
    reverse: Process  # listen: us.sms.api.sinch.com, ports["eu"]: zt.eu.sms.api.sinch.com
    forward: Process
    bundle: Path  # mitmproxy's CA + the test CA


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sdk")
    ca = CA(tmp / "pki")
    with ExitStack() as stack, SimServer(tls_context(ca)) as sim:
        env = resolver_env(tmp, sim.ports["tls"])
        (tmp / "reverse").mkdir()
        (tmp / "forward").mkdir()
        eu = free_port()
        reverse = stack.enter_context(
            running(
                start_proxy(
                    tmp / "reverse", "https://us.sms.api.sinch.com",
                    "--upstream", f"https://zt.eu.sms.api.sinch.com@{eu}",
                    "--upstream-ca", str(ca.cert_file), "--upstream-timeout", "3",
                    region=None, env=env,
                )
            )
        )  # fmt: skip
        reverse.ports["eu"] = eu
        forward = stack.enter_context(
            running(
                start_proxy(
                    tmp / "forward", "https://us.sms.api.sinch.com",
                    "--mode", "forward", "--upstream-ca", str(ca.cert_file), "--upstream-timeout", "3",
                    region=None, env=env,
                )
            )
        )  # fmt: skip
        bundle = ca_bundle(tmp / "bundle.pem", tmp / "forward" / "mitmproxy" / "mitmproxy-ca-cert.pem", ca.cert_file)
        yield Stack(sim, ca, reverse, forward, bundle)


@dataclass
class Client:
    """One SDK client, where its traffic goes, and what it experienced."""

    sdk: SinchClient
    mode: str
    auth: str
    region: str
    proxy: Process
    recorder: Recorder
    sim: SimServer
    #: The SMS API round trips of the last call_and_compare.
    last: list[Exchange] = field(default_factory=list)

    @property
    def sms(self) -> Any:
        return self.sdk.sms


def make_client(stack: Stack, mode: str, auth: str, monkeypatch: pytest.MonkeyPatch) -> Client:
    if auth == "service_plan":
        sdk, region = SinchClient(service_plan_id=PLAN, sms_api_token=TOKEN, sms_region="us"), "us"
    else:
        sdk, region = SinchClient(project_id=PROJECT, key_id=KEY_ID, key_secret=KEY_SECRET, sms_region="eu"), "eu"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if mode == "reverse":
        proxy = stack.reverse
        if auth == "service_plan":
            sdk.configuration.sms_domain_with_service_plan_id = f"http://127.0.0.1:{proxy.ports['listen']}"
        else:
            sdk.configuration.sms_domain = f"http://127.0.0.1:{proxy.ports['eu']}"
            # The token call never goes through the proxy (auth.sinch.com carries the key secret).
            sdk.configuration.auth_origin = f"http://127.0.0.1:{stack.sim.ports['http']}"
    else:
        proxy = stack.forward
        # The SDK keeps its default hosts; only the environment changes, as for any service.
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.ports['listen']}")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.bundle))
    recorder = Recorder()
    recorder.wrap(sdk.configuration.transport.http_session)
    return Client(sdk, mode, auth, region, proxy, recorder, stack.sim)


CLIENTS = [("reverse", "service_plan"), ("reverse", "project"), ("forward", "service_plan"), ("forward", "project")]


@pytest.fixture(params=CLIENTS, ids=["-".join(c) for c in CLIENTS])
def client(request, stack, monkeypatch) -> Client:
    stack.sim.script.clear()
    return make_client(stack, *request.param, monkeypatch)


@dataclass(frozen=True)
class Call:
    """One SDK call: the endpoint template it reaches, the statuses of its round trips, and a
    check that the SDK's own models took the answer."""

    name: str
    endpoint: str
    run: Callable[[Any], Any]
    statuses: tuple[int, ...]
    check: Callable[[Any], bool] = lambda result: result is not None


def _all(paginator: Any) -> list:
    return list(paginator.iterator())


CALLS = (
    Call("batches.send_sms", "batches", lambda s: s.batches.send_sms(to=[TO], from_=FROM, body="hi"), (201,),
         lambda r: r.id == BATCH),
    Call("batches.get", "batches/{batch_id}", lambda s: s.batches.get(batch_id=BATCH), (200,),
         lambda r: r.id == BATCH),
    Call("batches.list (2 pages)", "batches", lambda s: _all(s.batches.list(page_size=2)), (200, 200),
         lambda r: [b.id for b in r] == [BATCH] * 3),
    Call("batches.update_sms", "batches/{batch_id}", lambda s: s.batches.update_sms(batch_id=BATCH, body="new"),
         (200,), lambda r: r.id == BATCH),
    Call("batches.replace_sms", "batches/{batch_id}",
         lambda s: s.batches.replace_sms(batch_id=BATCH, to=[TO], from_=FROM, body="again"), (200,),
         lambda r: r.id == BATCH),
    Call("batches.cancel", "batches/{batch_id}", lambda s: s.batches.cancel(batch_id=BATCH), (200,),
         lambda r: r.canceled is True),
    Call("batches.dry_run_sms", "batches/dry_run", lambda s: s.batches.dry_run_sms(to=[TO], from_=FROM, body="hi"),
         (200,), lambda r: r.number_of_recipients == 1),
    Call("batches.send_delivery_feedback", "batches/{batch_id}/delivery_feedback",
         lambda s: s.batches.send_delivery_feedback(batch_id=BATCH, recipients=[TO]), (202,), lambda r: r is None),
    Call("delivery_reports.get", "batches/{batch_id}/delivery_report",
         lambda s: s.delivery_reports.get(batch_id=BATCH, report_type="full"), (200,),
         lambda r: r.total_message_count == 1),
    Call("delivery_reports.get_for_number", "batches/{batch_id}/delivery_report/{recipient}",
         lambda s: s.delivery_reports.get_for_number(batch_id=BATCH, recipient=TO), (200,),
         lambda r: r.batch_id == BATCH),
    Call("delivery_reports.list (2 pages)", "delivery_reports", lambda s: _all(s.delivery_reports.list(page_size=2)),
         (200, 200), lambda r: len(r) == 3),
    Call("groups.create", "groups", lambda s: s.groups.create(name="Group", members=[TO]), (201,),
         lambda r: r.id == GROUP),
    Call("groups.get", "groups/{group_id}", lambda s: s.groups.get(group_id=GROUP), (200,), lambda r: r.size == 2),
    Call("groups.list (2 pages)", "groups", lambda s: _all(s.groups.list(page_size=2)), (200, 200),
         lambda r: len(r) == 3),
    Call("groups.update", "groups/{group_id}", lambda s: s.groups.update(group_id=GROUP, add=[TO]), (200,),
         lambda r: r.id == GROUP),
    Call("groups.replace", "groups/{group_id}", lambda s: s.groups.replace(group_id=GROUP, name="G", members=[TO]),
         (200,), lambda r: r.id == GROUP),
    Call("groups.delete", "groups/{group_id}", lambda s: s.groups.delete(group_id=GROUP), (200,),
         lambda r: r is None),
    Call("groups.list_members", "groups/{group_id}/members", lambda s: _all(s.groups.list_members(group_id=GROUP)),
         (200,), lambda r: len(r) == 2),
    Call("inbounds.list (2 pages)", "inbounds", lambda s: _all(s.inbounds.list(page_size=2)), (200, 200),
         lambda r: len(r) == 3),
    Call("inbounds.get", "inbounds/{inbound_id}", lambda s: s.inbounds.get(inbound_id=INBOUND), (200,),
         lambda r: r.id == INBOUND),
)  # fmt: skip


def call_and_compare(client: Client, call: Call, watch: MetricsWatch, raises: bool = False) -> Any:
    """Run one SDK call; the proxy's counters must have grown by what the SDK experienced."""
    client.recorder.take()
    result: Any = None
    if raises:
        with pytest.raises(SinchException):
            call.run(client.sms)
    else:
        result = call.run(client.sms)
    exchanges = client.last = [e for e in client.recorder.take() if e.path.startswith("/xms/")]
    assert tuple(e.status for e in exchanges) == call.statuses, call.name
    responses, errors = watch.delta()
    want_responses, want_errors = expected(exchanges, client.region, call.endpoint)
    assert (responses, errors) == (want_responses, want_errors), call.name
    return result


def test_every_sms_call_is_counted_as_the_sdk_saw_it(client: Client) -> None:
    watch = MetricsWatch(client.proxy.ports["metrics"])
    for call in CALLS:
        result = call_and_compare(client, call, watch)
        assert call.check(result), (call.name, result)
    # The path id is the service plan id or the project id, as each auth form has it.
    ids = {seen.path.split("/")[3] for seen in client.sim.seen if seen.path.startswith("/xms/")}
    assert (PLAN if client.auth == "service_plan" else PROJECT) in ids


def _send(sms: Any) -> Any:
    return sms.batches.send_sms(to=[TO], from_=FROM, body="hi")


#: Every error answer of the catalog: each code with its status, each status without a code.
CATALOG_ERRORS = [(f"{c.status}:{c.code}", c.status) for c in catalog.CODES.values()] + [
    (str(s.status), s.status) for s in catalog.STATUSES.values() if s.status >= 400 and s.body != "json_code"
]


@pytest.mark.parametrize(("answer", "status"), CATALOG_ERRORS, ids=[a for a, _ in CATALOG_ERRORS])
def test_catalog_error_answers_are_counted_as_the_sdk_saw_them(stack, monkeypatch, answer, status) -> None:
    # Error answers do not depend on mode or auth: one client of each mode is enough here.
    for mode, auth in (("reverse", "project"), ("forward", "service_plan")):
        client = make_client(stack, mode, auth, monkeypatch)
        watch = MetricsWatch(client.proxy.ports["metrics"])
        stack.sim.script.append(answer)
        call_and_compare(client, Call(answer, "batches", _send, (status,)), watch, raises=True)


def test_failures_a_service_meets_are_counted_as_the_sdk_saw_them(client: Client) -> None:
    """401, 429, a 503 HTML page, an upstream that hangs up (the proxy's own 502, with its
    reason) and one that never answers (cut at the upstream timeout, 3 s here)."""
    watch = MetricsWatch(client.proxy.ports["metrics"])
    cases = [  # what the simulator answers; what the SDK sees; the reason of the proxy's own 502
        ("401", 401, None),
        # sinch 2.3 would retry a 429 after its Retry-After, but it parses the body first: a
        # 429 whose body is not JSON (as the catalog has it) ends the call at once.
        ("429", 429, None),
        ("html503", 503, None),
        ("drop", 502, "closed"),
        ("hang", 502, "timeout"),
    ]
    for answer, status, reason in cases:
        client.sim.script.append(answer)
        call_and_compare(client, Call(answer, "batches", _send, (status,)), watch, raises=True)
        assert client.last[0].own_answer_reason == reason, answer
    responses, errors = watch.delta()
    assert not responses and not errors
    assert not client.sim.script


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_an_expired_token_is_renewed_and_both_answers_counted(stack, monkeypatch, mode) -> None:
    """401 with `WWW-Authenticate: … expired …`: the SDK fetches a new token and retries; the
    proxy passes the header untouched and counts the 401 and the retry's 201."""
    client = make_client(stack, mode, "project", monkeypatch)
    watch = MetricsWatch(client.proxy.ports["metrics"])
    client.sim.script.append("expired")
    call_and_compare(client, Call("expired", "batches", _send, (401, 201)), watch)
    tokens = [seen for seen in client.sim.seen if seen.path == "/oauth2/token"][-2:]
    assert [t.answer for t in tokens] == [200, 200]  # the first token, then the renewal
    sends = [seen for seen in client.sim.seen if seen.path.endswith("/batches")][-2:]
    assert sends[0].authorization != sends[1].authorization  # the retry carries the new token
    if mode == "forward":
        assert {t.host for t in tokens} == {"auth.sinch.com"}  # reached through the tunnel


def test_service_plan_auth_does_not_renew_on_expired(stack, monkeypatch) -> None:
    client = make_client(stack, "reverse", "service_plan", monkeypatch)
    watch = MetricsWatch(client.proxy.ports["metrics"])
    client.sim.script.append("expired")
    call_and_compare(client, Call("expired", "batches", _send, (401,)), watch, raises=True)


def _peer_issuer(stack: Stack, host: str) -> str:
    """The issuer of the certificate a client sees for host:443 through the forward proxy."""
    with socket.create_connection(("127.0.0.1", stack.forward.ports["listen"]), timeout=10) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        context = ssl.create_default_context(cafile=str(stack.bundle))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            cert = tls.getpeercert()
    return dict(item[0] for item in cert["issuer"])["commonName"]


def test_forward_mode_decrypts_both_sms_host_forms_and_tunnels_the_auth_host(stack) -> None:
    """zt.eu.sms.api.sinch.com and us.sms.api.sinch.com get mitmproxy's certificate (decrypted,
    counted); auth.sinch.com gets the upstream's own (tunnelled: the key secret stays end to end)."""
    assert _peer_issuer(stack, "zt.eu.sms.api.sinch.com") == "mitmproxy"
    assert _peer_issuer(stack, "us.sms.api.sinch.com") == "mitmproxy"
    assert _peer_issuer(stack, "auth.sinch.com") == stack.ca.cert.subject.rfc4514_string().removeprefix("CN=")
