"""Apprise's Sinch notifier (PyPI `apprise`) through the real `sinch-sms-proxy` in forward mode.

Its host is fixed (`https://{region}.sms.api.sinch.com`, no override), so a service using it
can only go through the proxy as HTTPS_PROXY. One success and one `blocked_account`; the
proxy's counters must grow by exactly what Apprise experienced. Sinch's host name reaches a
local TLS simulator through a test-only resolver in the proxy process (tests/helpers/sdk.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apprise
import pytest

from tests.helpers.certs import CA
from tests.helpers.processes import Process, running, start_proxy
from tests.helpers.sdk import MetricsWatch, Recorder, SimServer, ca_bundle, expected, resolver_env, tls_context

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PLAN, TOKEN = "a1b2c3d4e5f6", "0123456789abcdef"  # Apprise wants hex for both
URL = f"sinch://{PLAN}:{TOKEN}@15550002222/15551231234?region=eu"


@dataclass(frozen=True)
class Stack:
    sim: SimServer
    forward: Process
    bundle: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("apprise")
    ca = CA(tmp / "pki")
    with SimServer(tls_context(ca)) as sim:
        (tmp / "forward").mkdir()
        proxy = start_proxy(
            tmp / "forward", "https://us.sms.api.sinch.com", "--mode", "forward", "--upstream-ca", str(ca.cert_file),
            region=None, env=resolver_env(tmp, sim.ports["tls"]),
        )  # fmt: skip
        with running(proxy):
            mitmproxy_ca = tmp / "forward" / "mitmproxy" / "mitmproxy-ca-cert.pem"
            bundle = ca_bundle(tmp / "bundle.pem", mitmproxy_ca, ca.cert_file)
            yield Stack(sim, proxy, bundle)


@pytest.fixture
def notifier(stack, monkeypatch) -> Iterator[tuple[apprise.Apprise, Recorder]]:
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{stack.forward.ports['listen']}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.bundle))
    recorder = Recorder()
    recorder.wrap_every_session(monkeypatch)
    notify = apprise.Apprise()
    assert notify.add(URL)
    stack.sim.script.clear()
    yield notify, recorder


@pytest.mark.parametrize(
    ("answer", "delivered", "status", "code"),
    [("ok", True, 201, ""), ("403:blocked_account", False, 403, "blocked_account")],
    ids=["success", "blocked_account"],
)
def test_apprise_notification_is_counted_as_apprise_saw_it(stack, notifier, answer, delivered, status, code) -> None:
    notify, recorder = notifier
    watch = MetricsWatch(stack.forward.ports["metrics"])
    stack.sim.script.append(answer)
    assert bool(notify.notify(body="disk almost full", title="alert")) is delivered
    exchanges = recorder.take()
    assert [(e.method, e.status, e.code) for e in exchanges] == [("POST", status, code)]
    assert exchanges[0].url == f"https://eu.sms.api.sinch.com/xms/v1/{PLAN}/batches"  # Apprise's own host
    responses, errors = watch.delta()
    assert (responses, errors) == expected(exchanges, "eu", "batches")
    assert responses == Counter({("eu", "batches", "POST", str(status), code): 1})
    assert stack.sim.seen[-1].host == "eu.sms.api.sinch.com"
