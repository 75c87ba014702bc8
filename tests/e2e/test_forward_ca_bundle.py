"""The README's forward-mode trust recipe, end to end: a combined CA bundle (the system's CAs
plus mitmproxy's) lets a service behind the proxy reach a Sinch host, decrypted and counted,
and any other HTTPS host, tunnelled and verified against its own CA. Pointing SSL_CERT_FILE
at mitmproxy's CA alone (the old advice) replaces the trust store: the other host then fails.

Real parts: sinch-sms-proxy in forward mode, two TLS simulators, a Python client using the
standard library's proxy support and OpenSSL's SSL_CERT_FILE. The Sinch host name reaches
the local simulator through a test-only sitecustomize on the proxy's PYTHONPATH that maps
host:port pairs in socket.getaddrinfo (no /etc/hosts edits, nothing outside the test).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import certifi
import pytest

from tests.helpers.certs import CA
from tests.helpers.client import scrape, total
from tests.helpers.paths import REPO
from tests.helpers.processes import free_port, start, start_simulator, wait_for_port

pytestmark = [pytest.mark.e2e]

SINCH_HOST = "us.sms.api.sinch.com"
OTHER_HOST = "api.other-service.test"  # some other HTTPS API the service calls
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

#: Loaded by the proxy's Python at start (PYTHONPATH): routes `host:port` to a local address.
RESOLVER = """
import os
import socket

_ROUTES = {}
for _entry in filter(None, os.environ.get("SINCH_TEST_ROUTES", "").split(",")):
    _name, _target = _entry.split("=")
    _host, _port = _name.rsplit(":", 1)
    _to_host, _to_port = _target.rsplit(":", 1)
    _ROUTES[(_host, int(_port))] = (_to_host, int(_to_port))
_getaddrinfo = socket.getaddrinfo


def _routed(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    target = _ROUTES.get((name, int(port or 0)))
    return _getaddrinfo(*(target or (host, port)), *args, **kwargs)


socket.getaddrinfo = _routed
"""

#: The service: stdlib HTTPS through HTTPS_PROXY (urllib) with OpenSSL's default trust
#: (SSL_CERT_FILE), plus who issued the certificate it was shown (http.client's tunnel).
CLIENT = """
import http.client, json, os, ssl, sys, urllib.error, urllib.request
from urllib.parse import urlsplit

proxy = urlsplit(os.environ["HTTPS_PROXY"])
result = {"trusted_cas": ssl.create_default_context().cert_store_stats()["x509_ca"]}
for name, url, sim in json.loads(sys.argv[1]):
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"X-Sinch-Sim": sim})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except urllib.error.URLError as exc:
        status = f"error: {exc.reason}"
    issuer = None
    try:
        conn = http.client.HTTPSConnection(proxy.hostname, proxy.port, context=ssl.create_default_context(), timeout=15)
        conn.set_tunnel(urlsplit(url).hostname, 443)
        conn.connect()
        issuer = dict(x[0] for x in conn.sock.getpeercert()["issuer"])["commonName"]
        conn.close()
    except (OSError, ssl.SSLError):
        pass
    result[name] = {"status": status, "issuer": issuer}
print(json.dumps(result))
"""


def recipe_commands() -> list[str]:
    """The README's `cat … > ~/.mitmproxy/ca-bundle.pem` commands: system CAs, then certifi's."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Forward-proxy mode") : readme.index("## Plain mitmproxy")]
    commands = re.findall(r"^`?(cat .*?> ~/\.mitmproxy/ca-bundle\.pem)`?\.?$", section, re.MULTILINE)
    commands += re.findall(r"`(cat \"\$\(python3 -m certifi\)\" .*?> ~/\.mitmproxy/ca-bundle\.pem)`", section)
    return commands


def _count_certs(path: Path) -> int:
    return path.read_text().count("-----BEGIN CERTIFICATE-----")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Two HTTPS upstreams and the proxy in forward mode in front of them."""
    if not Path(SYSTEM_BUNDLE).is_file():
        pytest.skip(f"no system CA bundle at {SYSTEM_BUNDLE} (Debian package ca-certificates)")
    tmp = tmp_path_factory.mktemp("ca-bundle")
    sinch_ca = CA(tmp / "sinch-ca", "Sinch stand-in CA")  # trusted by the proxy only (--upstream-ca)
    public_ca = CA(tmp / "public-ca", "Public stand-in CA")  # a CA of the system store
    sinch_cert = sinch_ca.issue("sinch", (SINCH_HOST,))
    other_cert = public_ca.issue("other", (OTHER_HOST,))
    sinch = start_simulator(tmp, "--tls-cert", str(sinch_cert.cert_file), "--tls-key", str(sinch_cert.key_file))
    other = start_simulator(tmp, "--tls-cert", str(other_cert.cert_file), "--tls-key", str(other_cert.key_file))

    # The machine's CA store, with the stand-in public CA in it (as a real API's CA would be).
    system = tmp / "system" / "ca-certificates.crt"
    system.parent.mkdir()
    system.write_text(Path(SYSTEM_BUNDLE).read_text() + public_ca.cert_file.read_text())
    resolver = tmp / "resolver"
    resolver.mkdir()
    (resolver / "sitecustomize.py").write_text(RESOLVER)
    routes = f"{SINCH_HOST}:443=127.0.0.1:{sinch.ports['http']},{OTHER_HOST}:443=127.0.0.1:{other.ports['http']}"

    confdir = tmp / "mitmproxy"
    listen, metrics = free_port(), free_port()
    argv = [str(Path(sys.executable).parent / "sinch-sms-proxy"), "--mode", "forward",
            "--listen-port", str(listen), "--metrics-port", str(metrics), "--metrics-host", "127.0.0.1",
            "--confdir", str(confdir), "--upstream-ca", str(sinch_ca.cert_file)]  # fmt: skip
    env = {"PYTHONPATH": str(resolver), "SINCH_TEST_ROUTES": routes}
    proxy = start(argv, tmp / "proxy.log", env)
    try:
        wait_for_port(listen, proc=proxy.popen)
        wait_for_port(metrics, proc=proxy.popen)
        yield {"tmp": tmp, "confdir": confdir, "system": system, "listen": listen, "metrics": metrics, "proxy": proxy}
    finally:
        for proc in (proxy, sinch, other):
            proc.stop()


def _client(world: dict, bundle: Path) -> dict:
    """The service, trusting `bundle` only, calling the Sinch host (blocked_account) and the other host."""
    calls = [
        ["sinch", f"https://{SINCH_HOST}/xms/v1/PLAN1234/batches", "403:blocked_account"],
        ["other", f"https://{OTHER_HOST}/xms/v1/PLAN1234/batches", "ok"],
    ]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("SSL_")}
    env.update(HTTPS_PROXY=f"http://127.0.0.1:{world['listen']}", SSL_CERT_FILE=str(bundle), NO_PROXY="")
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(calls)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_readme_gives_both_bundle_recipes() -> None:
    commands = recipe_commands()
    assert len(commands) == 2, commands
    assert commands[0] == f"cat {SYSTEM_BUNDLE} ~/.mitmproxy/mitmproxy-ca-cert.pem > ~/.mitmproxy/ca-bundle.pem"


def test_the_combined_bundle_reaches_the_sinch_host_decrypted_and_other_hosts_verified(world) -> None:
    system_recipe = recipe_commands()[0]
    home = world["tmp"] / "home"
    (home / ".mitmproxy").mkdir(parents=True)
    (home / ".mitmproxy" / "mitmproxy-ca-cert.pem").write_text((world["confdir"] / "mitmproxy-ca-cert.pem").read_text())
    command = system_recipe.replace(SYSTEM_BUNDLE, str(world["system"]))
    subprocess.run(["bash", "-c", command], env={**os.environ, "HOME": str(home)}, check=True, timeout=30)
    bundle = home / ".mitmproxy" / "ca-bundle.pem"
    assert _count_certs(bundle) == _count_certs(world["system"]) + 1

    before = scrape(world["metrics"])
    got = _client(world, bundle)
    after = scrape(world["metrics"])

    assert got["trusted_cas"] == _count_certs(bundle)  # the system's CAs and mitmproxy's
    # the Sinch host: decrypted by the proxy (its CA signed what the client saw), counted
    assert got["sinch"] == {"status": 403, "issuer": "mitmproxy"}, got
    blocked = {"code": "blocked_account", "status": "403", "region": "us"}
    assert (
        total(after, "sinch_sms_responses_total", **blocked) - total(before, "sinch_sms_responses_total", **blocked)
        == 1
    )
    # the other host: tunnelled, its own certificate verified against the system's CAs, not counted
    assert got["other"] == {"status": 201, "issuer": "Public stand-in CA"}, got
    assert total(after, "sinch_sms_responses_total") - total(before, "sinch_sms_responses_total") == 1


def test_mitmproxy_ca_alone_replaces_the_trust_store_and_breaks_other_hosts(world) -> None:
    """What SSL_CERT_FILE=mitmproxy-ca-cert.pem does: one trusted CA, the Sinch host works,
    every tunnelled host fails verification."""
    got = _client(world, world["confdir"] / "mitmproxy-ca-cert.pem")
    assert got["trusted_cas"] == 1
    assert got["sinch"]["status"] == 403
    assert str(got["other"]["status"]).startswith("error:") and "CERTIFICATE_VERIFY_FAILED" in got["other"]["status"]
    assert got["other"]["issuer"] is None


def test_the_certifi_recipe_makes_mozillas_cas_plus_mitmproxys(world) -> None:
    """For images without a system bundle: certifi's Mozilla CAs and mitmproxy's, loadable."""
    certifi_recipe = recipe_commands()[1]
    home = world["tmp"] / "home-certifi"
    (home / ".mitmproxy").mkdir(parents=True)
    (home / ".mitmproxy" / "mitmproxy-ca-cert.pem").write_text((world["confdir"] / "mitmproxy-ca-cert.pem").read_text())
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", certifi_recipe], env=env, check=True, timeout=30)
    bundle = home / ".mitmproxy" / "ca-bundle.pem"
    assert _count_certs(bundle) == _count_certs(Path(certifi.where())) + 1 > 100
    got = _client(world, bundle)
    assert got["trusted_cas"] == _count_certs(bundle)
    assert got["sinch"] == {"status": 403, "issuer": "mitmproxy"}, got
