"""End to end: the real `sinch-sms-proxy` process in front of the real simulator, real HTTP."""

from __future__ import annotations

import contextlib
import http.client as httpclient
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest

from sinch_sms_exporter import cli, settings
from sinch_sms_exporter.contract import catalog
from sinch_sms_exporter.contract.labels import ENDPOINT_TEMPLATES
from sinch_sms_exporter.sim import simulator
from tests.helpers.client import http, scrape, total
from tests.helpers.deploy_files import final_stage
from tests.helpers.paths import PLAN, PROXY
from tests.helpers.processes import free_port, running, start, start_proxy, start_simulator, wait_for_port, wait_until
from tests.helpers.prometheus import promtool

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxy(sim, tmp_path):
    with running(start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")) as proc:
        yield proc


def raw_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    """(status, header list, body bytes) exactly as they came over the wire (no decoding)."""
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body, headers)
    response = conn.getresponse()
    result = (response.status, response.getheaders(), response.read())
    conn.close()
    return result


def test_every_catalog_answer_is_counted_exactly(proxy) -> None:
    port = proxy.ports["listen"]
    sent: dict[tuple[str, str], int] = {}
    for answer in simulator.CATALOG_ANSWERS:
        for _ in range(2):
            status, _, _ = http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": answer})
            code = answer.split(":")[1] if ":" in answer else ""
            sent[(str(status), code)] = sent.get((str(status), code), 0) + 1
    status, _, _ = http("GET", f"http://127.0.0.1:{port}{PLAN}/batches")  # the 200 of a list
    sent[(str(status), "")] = sent.get((str(status), ""), 0) + 1
    samples = scrape(proxy.ports["metrics"])
    for (status, code), count in sent.items():
        assert total(samples, "sinch_sms_responses_total", status=status, code=code) == count
    assert total(samples, "sinch_sms_responses_total") == sum(sent.values())
    # Every catalog code and status shows up.
    assert {c.code for c in catalog.CODES.values()} <= {code for _, code in sent}
    assert {str(s) for s in catalog.STATUSES} <= {status for status, _ in sent}
    histogram_count = total(samples, "sinch_sms_request_duration_seconds_count")
    assert histogram_count == sum(sent.values())


def test_every_endpoint_template_gets_its_label(proxy) -> None:
    port = proxy.ports["listen"]
    for template in ENDPOINT_TEMPLATES:
        path = "/".join("01FC66621XXXXX" if s.startswith("{") else s for s in template.split("/"))
        http("GET", f"http://127.0.0.1:{port}{PLAN}/{path}?page=1", headers={"X-Sinch-Sim": "403:unknown_group"})
    http("GET", f"http://127.0.0.1:{port}/totally/else")
    samples = scrape(proxy.ports["metrics"])
    for template in ENDPOINT_TEMPLATES:
        assert total(samples, "sinch_sms_responses_total", endpoint=template, code="unknown_group") == 1
    assert total(samples, "sinch_sms_responses_total", endpoint="other", status="404") == 1
    for (_, labels), _ in samples.items():
        assert "01FC66621XXXXX" not in str(labels) and "TESTPLAN123" not in str(labels)


@pytest.mark.parametrize(
    "answer",
    [
        "ok",
        "big",
        "chunked:ok",
        "403:blocked_account",
        "gzip:403:missing_callback_url",
        "br:400:syntax_invalid_json",
        "zstd:chunked:403:illegal_number_type",
        "deflate:400:syntax_constraint_violation",
        "chunked:403:unknown_group",
        "garbage",
        "novel:quota_exceeded",
        "404",
        "429",
        "503",
    ],
)
def test_answers_reach_the_client_byte_for_byte(sim, proxy, answer: str) -> None:
    headers = {"X-Sinch-Sim": answer, "Accept-Encoding": "gzip, br, zstd, deflate", "Connection": "close"}
    direct = raw_request(sim.ports["http"], "POST", f"{PLAN}/batches", headers, b'{"to": ["+15551231234"]}')
    proxied = raw_request(proxy.ports["listen"], "POST", f"{PLAN}/batches", headers, b'{"to": ["+15551231234"]}')
    assert proxied[0] == direct[0]
    assert proxied[2] == direct[2]  # body bytes, still encoded as the upstream sent them

    def comparable(header_list):
        return [(k.lower(), v) for k, v in header_list if k.lower() != "date"]

    assert comparable(proxied[1]) == comparable(direct[1])


def test_big_bodies_stream_through_completely(proxy) -> None:
    status, _, body = http("GET", f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/batches?sim=big")
    assert status == 200 and len(body) > 2_000_000 and body.endswith(b"]}")
    samples = scrape(proxy.ports["metrics"])
    assert total(samples, "sinch_sms_responses_total", status="200", method="GET") == 1


def test_refused_upstream_gets_the_client_a_502_and_is_counted(tmp_path) -> None:
    dead = free_port()  # nothing listens there
    with running(start_proxy(tmp_path, f"http://127.0.0.1:{dead}")) as proxy:
        status, _, _ = http("POST", f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/batches", b"{}")
        assert status == 502
        samples = scrape(proxy.ports["metrics"])
        assert total(samples, "sinch_sms_upstream_errors_total", reason="connect", endpoint="batches") == 1
        assert total(samples, "sinch_sms_responses_total") == 0


def test_faults_are_upstream_errors_not_responses(proxy) -> None:
    port = proxy.ports["listen"]
    for fault in ("drop", "reset", "cut"):
        status, _, _ = http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": fault})
        assert status == 502, fault
    samples = scrape(proxy.ports["metrics"])
    assert total(samples, "sinch_sms_upstream_errors_total", reason="closed") == 3
    assert total(samples, "sinch_sms_responses_total") == 0
    # and the proxy keeps serving
    assert http("GET", f"http://127.0.0.1:{port}{PLAN}/batches")[0] == 200


def test_several_upstreams_each_with_a_listener_and_region(tmp_path) -> None:
    with (
        running(start_simulator(tmp_path)) as us_sim,
        running(start_simulator(tmp_path)) as eu_sim,
    ):
        eu_port = free_port()
        with running(
            start_proxy(
                tmp_path,
                f"http://127.0.0.1:{us_sim.ports['http']}",
                "--upstream",
                f"http://127.0.0.1:{eu_sim.ports['http']}@{eu_port}",
                "--region",
                "us",
                "--region",
                "eu",
                region=None,
            )
        ) as proxy:
            wait_for_port(eu_port)
            http("GET", f"http://127.0.0.1:{proxy.ports['listen']}{PLAN}/batches")
            for _ in range(3):
                http("POST", f"http://127.0.0.1:{eu_port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": "blocked_account"})
            samples = scrape(proxy.ports["metrics"])
            assert total(samples, "sinch_sms_responses_total", region="us", status="200") == 1
            assert total(samples, "sinch_sms_responses_total", region="eu", code="blocked_account") == 3
            assert total(samples, "sinch_sms_responses_total", region="eu", status="200") == 0


def test_environment_variables_configure_the_proxy(sim, tmp_path) -> None:
    listen, metrics = free_port(), free_port()
    env = {
        "SINCH_PROXY_UPSTREAM": f"http://127.0.0.1:{sim.ports['http']}",
        "SINCH_PROXY_REGION": "br",
        "SINCH_PROXY_LISTEN_PORT": str(listen),
        "SINCH_PROXY_METRICS_PORT": str(metrics),
        "SINCH_PROXY_METRICS_HOST": "127.0.0.1",
        "SINCH_PROXY_LATENCY_BUCKETS": "0.5,2",
        "SINCH_PROXY_CONFDIR": str(tmp_path / "conf"),
    }
    with running(start([PROXY], tmp_path / "env-proxy.log", env)) as proc:
        wait_for_port(listen, proc=proc.popen)
        wait_for_port(metrics, proc=proc.popen)
        http("GET", f"http://127.0.0.1:{listen}{PLAN}/inbounds")
        samples = scrape(metrics)
        assert total(samples, "sinch_sms_responses_total", region="br", endpoint="inbounds") == 1
        les = {dict(k[1]).get("le") for k in samples if k[0] == "sinch_sms_request_duration_seconds_bucket"}
        assert les == {"0.5", "2.0", "+Inf"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROXY, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "ftp://us.sms.api.sinch.com"], "--upstream ftp://us.sms.api.sinch.com: expected"),
        (["--upstream", "https://"], "--upstream https://: expected http(s)://HOST"),
        (["--upstream", "https://us.sms.api.sinch.com/xms/v1"], "base URL only"),
        (["--upstream", "https://us.sms.api.sinch.com:99999"], "port"),
        (["--upstream", "https://us.sms.api.sinch.com@x"], "listen port"),
        (["--region", "us", "--region", "eu"], "--region"),
        (["--region", "Bad Region"], "--region 'Bad Region': a region is lowercase"),
        (["--latency-buckets", "1,0.5"], "increasing"),
        (["--listen-port", "abc"], "--listen-port abc: not a whole number"),
        (["--listen-port", "0"], "not between"),
        (["--body-limit", "0"], "--body-limit"),
        (["--metrics-web-config", "/no/such/file.yml"], "no such file"),
        (["--mode", "sideways"], "--mode sideways: choose from reverse, forward"),
        (["--mode", "forward", "--forward-hosts", "(unclosed"], "--forward-hosts (unclosed: not a regular expression"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("sinch-sms-proxy: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SINCH_PROXY_METRICS_PORT", "nine", "SINCH_PROXY_METRICS_PORT=nine: not a whole number"),
        ("SINCH_PROXY_UPSTREAM_TIMEOUT", "soon", "SINCH_PROXY_UPSTREAM_TIMEOUT=soon: not a number"),
        # argparse checks neither choices nor booleans of defaults: these once passed unchecked
        # (a log level reached mitmproxy and ended in a traceback; a bad mode ran reverse mode).
        ("SINCH_PROXY_LOG_LEVEL", "loud", "SINCH_PROXY_LOG_LEVEL=loud: choose from error, warn, info, debug"),
        ("SINCH_PROXY_MODE", "sideways", "SINCH_PROXY_MODE=sideways: choose from reverse, forward"),
        ("SINCH_PROXY_SSL_INSECURE", "maybe", "SINCH_PROXY_SSL_INSECURE=maybe: expected true or false"),
        ("SINCH_PROXY_UPSTREAM", "ftp://x", "SINCH_PROXY_UPSTREAM=ftp://x: expected http(s)://"),
    ],
)
def test_bad_environment_gets_one_line_naming_the_variable(variable: str, value: str, message: str) -> None:
    result = run_cli(env={variable: value})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"sinch-sms-proxy: error: {message}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("True", True), ("yes", True), ("ON", True), ("0", False), ("false", False), ("", False)],
)
def test_boolean_variables_read_every_usual_spelling(value: str, expected: bool) -> None:
    parser = cli.build_parser()
    parser.apply_environment({"SINCH_PROXY_SSL_INSECURE": value})
    assert parser.parse_args([]).ssl_insecure is expected


def test_flags_win_over_variables_and_variables_over_defaults() -> None:
    parser = cli.build_parser()
    parser.apply_environment({"SINCH_PROXY_METRICS_PORT": "9001", "SINCH_PROXY_LOG_LEVEL": "debug"})
    args = parser.parse_args(["--metrics-port", "9002"])
    assert (args.metrics_port, args.log_level, args.listen_port) == (9002, "debug", settings.DEFAULT_LISTEN_PORT)


def test_every_flag_has_its_variable_in_the_help() -> None:
    parser = cli.build_parser()
    named = {variable for _, variable in parser.variables}
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings[0].startswith("--")}
    expected = {
        settings.ENV_PREFIX + f[2:].replace("-", "_").upper()
        for f in flags - {"--help", "--version", "--print-addon-path"}
    }
    assert named == expected
    help_text = " ".join(run_cli("--help").stdout.split())
    assert all(f"env {variable}" in help_text for variable in named)
    assert "default: None" not in help_text and "(default: False)" not in help_text


@pytest.mark.parametrize("which", ["proxy", "metrics"])
def test_port_in_use_gets_one_line_and_exit_1(tmp_path, which: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        free = free_port()
        ports = (busy, free) if which == "proxy" else (free, busy)
        result = run_cli(
            "--listen-port", str(ports[0]), "--metrics-port", str(ports[1]), "--metrics-host", "127.0.0.1",
            "--confdir", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"sinch-sms-proxy: error: {which} port 127.0.0.1:{busy} is already in use"


def test_help_explains_every_flag() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--upstream", "--region", "--listen-host", "--listen-port", "--metrics-host", "--metrics-port"):
        assert flag in result.stdout
    assert "SINCH_PROXY_" in result.stdout
    # No option is left without an explanation.
    helps = {action.dest: action.help for action in cli.build_parser()._actions}
    assert all(helps.values()), helps


def test_sigterm_shuts_down_cleanly_and_frees_the_ports(sim, tmp_path) -> None:
    proc = start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}")
    # Idle client connections still open at shutdown (a pooled keep-alive client) must not
    # turn into tracebacks.
    idle = [socket.create_connection(("127.0.0.1", proc.ports["listen"])) for _ in range(3)]
    started = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    for sock in idle:
        sock.close()
    assert time.monotonic() - started < 8
    for port in (proc.ports["listen"], proc.ports["metrics"]):
        with socket.socket() as sock:
            # free again for a restarted proxy (which, like every server, sets SO_REUSEADDR:
            # the closed connections' TIME_WAIT entries do not block it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert "Traceback" not in proc.log()


def test_mitmdump_loads_the_addon_script(sim, tmp_path) -> None:
    script = subprocess.run([PROXY, "--print-addon-path"], capture_output=True, text=True, check=True).stdout.strip()
    assert script.endswith("mitmproxy_script.py")
    listen, metrics = free_port(), free_port()
    mitmdump = os.path.join(os.path.dirname(PROXY), "mitmdump")
    argv = [
        mitmdump, "-q", "-s", script,
        "--mode", f"reverse:http://127.0.0.1:{sim.ports['http']}@{listen}",
        "--set", "connection_strategy=lazy",
        "--set", f"sinch_metrics_port={metrics}", "--set", "sinch_metrics_host=127.0.0.1",
        "--set", f"sinch_regions=127.0.0.1:{sim.ports['http']}=ca",
        "--set", f"confdir={tmp_path / 'conf'}",
    ]  # fmt: skip
    with running(start(argv, tmp_path / "mitmdump.log")) as proc:
        wait_for_port(listen, proc=proc.popen)
        wait_for_port(metrics, proc=proc.popen)
        http("POST", f"http://127.0.0.1:{listen}{PLAN}/batches", b"{}", {"X-Sinch-Sim": "missing_callback_url"})
        samples = scrape(metrics)
        assert total(samples, "sinch_sms_responses_total", region="ca", code="missing_callback_url") == 1


def addon_script() -> str:
    return subprocess.run([PROXY, "--print-addon-path"], capture_output=True, text=True, check=True).stdout.strip()


MITMDUMP = os.path.join(os.path.dirname(PROXY), "mitmdump")

# A second mitmdump script for the health test: a request hook that blocks the event loop
# until told to stop (a stuck hook), and one that moves the listener to another port.
FAULTS_SCRIPT = textwrap.dedent(
    """
    import time
    from pathlib import Path

    from mitmproxy import ctx

    HERE = Path(__file__).parent


    class Faults:
        def request(self, flow):
            if flow.request.path == "/block-the-loop":
                (HERE / "blocking").touch()
                deadline = time.monotonic() + 60
                while not (HERE / "release").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            elif flow.request.path.startswith("/move-listener/"):
                port = flow.request.path.rsplit("/", 1)[1]
                ctx.options.update(mode=[ctx.options.mode[0].rsplit("@", 1)[0] + "@" + port])


    addons = [Faults()]
    """
)


def run_healthcheck(metrics_port: int) -> int:
    """The image's HEALTHCHECK command (Dockerfile), against this metrics port."""
    check = final_stage().exec_form("HEALTHCHECK")
    assert check[0] == "python"
    env = {**os.environ, "SINCH_PROXY_METRICS_PORT": str(metrics_port)}
    return subprocess.run([sys.executable, *check[1:]], env=env, capture_output=True, timeout=30).returncode


def test_healthz_follows_the_proxy_listener_and_event_loop(sim, tmp_path) -> None:
    """Real mitmdump with the addon: /healthz is ok while the proxy serves, 503 with the
    reason while a hook blocks the event loop or the listener cannot listen; the image's
    HEALTHCHECK command (and so Kubernetes' httpGet probes, which fail on 503) follows."""
    faults = tmp_path / "faults" / "faults.py"
    faults.parent.mkdir()
    faults.write_text(FAULTS_SCRIPT)
    listen, metrics = free_port(), free_port()
    argv = [
        MITMDUMP, "-q", "-s", addon_script(), "-s", str(faults),
        "--mode", f"reverse:http://127.0.0.1:{sim.ports['http']}@{listen}", "--set", "listen_host=127.0.0.1",
        "--set", "connection_strategy=lazy", "--set", f"confdir={tmp_path / 'conf'}",
        "--set", f"sinch_metrics_port={metrics}", "--set", "sinch_metrics_host=127.0.0.1",
    ]  # fmt: skip
    healthz = f"http://127.0.0.1:{metrics}/healthz"
    with running(start(argv, tmp_path / "mitmdump.log")) as proc:
        wait_for_port(listen, proc=proc.popen)
        wait_for_port(metrics, proc=proc.popen)
        assert http("GET", healthz)[::2] == (200, b"ok\n")
        assert run_healthcheck(metrics) == 0

        # A hook blocks the event loop: nothing is proxied, although the listener "runs".
        blocked = threading.Thread(target=http, args=("GET", f"http://127.0.0.1:{listen}/block-the-loop"),
                                   kwargs={"timeout": 60})  # fmt: skip
        blocked.start()
        wait_until(lambda: (faults.parent / "blocking").exists(), what="the hook blocks the loop")
        assert http("GET", healthz, timeout=30)[::2] == (503, b"the proxy's event loop did not answer within 1 s\n")
        assert run_healthcheck(metrics) != 0
        (faults.parent / "release").touch()
        blocked.join(timeout=60)
        assert http("GET", healthz)[::2] == (200, b"ok\n")

        # The listener moves to a port another process holds: no listener runs.
        with socket.create_server(("127.0.0.1", 0)) as squatter:
            busy = squatter.getsockname()[1]
            with contextlib.suppress(OSError):  # the listener this request came in on goes away
                http("GET", f"http://127.0.0.1:{listen}/move-listener/{busy}", timeout=10)
            expected = (503, f"proxy port 127.0.0.1:{busy} is already in use\n".encode())
            wait_until(lambda: http("GET", healthz)[::2] == expected, what="/healthz reports the busy port")
            assert run_healthcheck(metrics) != 0
            assert proc.popen.poll() is None  # mitmdump itself runs on: only the probe can tell
    assert "Traceback" not in proc.log()


def test_mitmdump_with_a_busy_metrics_port_exits_with_one_clear_line(sim, tmp_path) -> None:
    """A sidecar that proxies but serves no /metrics counts for nobody: mitmdump -s must not
    start like that. The addon logs the failure at error level during startup, and
    mitmproxy's errorcheck ends mitmdump with status 1."""
    listen = free_port()
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        busy = squatter.getsockname()[1]
        result = subprocess.run(
            [MITMDUMP, "-q", "-s", addon_script(), "--mode", f"reverse:http://127.0.0.1:{sim.ports['http']}@{listen}",
             "--set", f"sinch_metrics_port={busy}", "--set", "sinch_metrics_host=127.0.0.1",
             "--set", f"confdir={tmp_path / 'conf'}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    message = f"cannot serve /metrics on 127.0.0.1:{busy}: the port is already in use (option sinch_metrics_port)"
    assert [line for line in output.splitlines() if "/metrics" in line] == [result.stdout.strip().splitlines()[-1]]
    assert result.stdout.strip().splitlines()[-1].endswith(message)  # after mitmproxy's [time] prefix
    assert "Traceback" not in output


# sinch-sms-proxy with its own port check skipped: the port is taken between check and start.
_RACE = "import sys; from sinch_sms_exporter import cli; cli._check_port = lambda *a: None; sys.exit(cli.main())"


@pytest.mark.parametrize("which", ["proxy", "metrics"])
def test_a_port_taken_after_the_check_still_ends_in_one_line(tmp_path, which: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        busy = squatter.getsockname()[1]
        ports = (busy, free_port()) if which == "proxy" else (free_port(), busy)
        result = subprocess.run(
            [sys.executable, "-c", _RACE, "--upstream", "http://127.0.0.1:9", "--listen-port", str(ports[0]),
             "--metrics-port", str(ports[1]), "--metrics-host", "127.0.0.1", "--confdir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    expected = {
        "proxy": f"proxy port 127.0.0.1:{busy} is already in use",
        "metrics": f"cannot serve /metrics on 127.0.0.1:{busy}: the port is already in use (option sinch_metrics_port)",
    }[which]
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"sinch-sms-proxy: error: {expected}"]
    assert "Traceback" not in result.stdout + result.stderr


def test_healthz_is_ok_while_the_proxy_serves(proxy) -> None:
    assert http("GET", f"http://127.0.0.1:{proxy.ports['metrics']}/healthz")[::2] == (200, b"ok\n")
    assert run_healthcheck(proxy.ports["metrics"]) == 0


def test_mitmdump_rejects_bad_addon_options(tmp_path) -> None:
    script = subprocess.run([PROXY, "--print-addon-path"], capture_output=True, text=True, check=True).stdout.strip()
    mitmdump = os.path.join(os.path.dirname(PROXY), "mitmdump")
    result = subprocess.run(
        [mitmdump, "-s", script, "--set", "sinch_code_cap=-5", "--set", f"confdir={tmp_path}", "--listen-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "sinch_code_cap" in result.stdout + result.stderr


def test_forward_mode_counts_sinch_hosts_only(sim, tmp_path) -> None:
    # Plain-HTTP forward proxying: the simulator stands in for a Sinch host by name.
    proxy = start_proxy(tmp_path, "http://unused.invalid", "--mode", "forward", "--forward-hosts", r"^127\.0\.0\.1$")
    with running(proxy):
        port = proxy.ports["listen"]
        conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"http://127.0.0.1:{sim.ports['http']}{PLAN}/batches", headers={"X-Sinch-Sim": "429"})
        assert conn.getresponse().status == 429
        conn.close()
        conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"http://localhost:{sim.ports['http']}{PLAN}/batches", headers={"X-Sinch-Sim": "429"})
        assert conn.getresponse().status == 429  # passed through, not counted
        conn.close()
        samples = scrape(proxy.ports["metrics"])
        assert total(samples, "sinch_sms_responses_total", status="429") == 1


@pytest.mark.skipif(
    promtool() is None and os.environ.get("SINCH_REQUIRE_SYSTEM_TOOLS") != "1",
    reason="promtool (Debian package prometheus) is not installed",
)
def test_promtool_finds_no_problem_in_a_real_scrape(proxy) -> None:
    port = proxy.ports["listen"]
    for answer in simulator.CATALOG_ANSWERS:
        http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": answer})
    http("POST", f"http://127.0.0.1:{port}{PLAN}/batches", b"{}", {"X-Sinch-Sim": "drop"})
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy.ports['metrics']}/metrics", timeout=10).read()
    result = subprocess.run([promtool() or "promtool", "check", "metrics"], input=text, capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result.stdout + result.stderr
