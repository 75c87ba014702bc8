"""`mitmdump -s <addon> --set sinch_…=…`: the real mitmdump process. A bad or misspelt sinch_*
option ends the start with one error line (the table's reason, naming the option) and status 1:
no traceback, no proxy running silently without its metrics."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from sinch_sms_exporter.mitm.addon import SinchSmsExporter
from tests.helpers.client import http, scrape, total
from tests.helpers.paths import BIN, PLAN, PROXY
from tests.helpers.processes import free_port, running, start, start_simulator, wait_for_port

pytestmark = pytest.mark.e2e

MITMDUMP = str(BIN / "mitmdump")
#: mitmproxy's own last word when errorcheck ends the start (stderr)
ERRORCHECK = ("Error logged during startup, exiting...", "Errors logged during startup, exiting...")


@pytest.fixture(scope="module")
def script() -> str:
    return subprocess.run([PROXY, "--print-addon-path"], capture_output=True, text=True, check=True).stdout.strip()


def mitmdump(script: str, tmp_path: Path, *sets: str) -> subprocess.CompletedProcess:
    argv = [MITMDUMP, "-q", "-s", script, "--mode", f"reverse:http://127.0.0.1:9@{free_port()}",
            "--set", f"confdir={tmp_path / 'conf'}"]  # fmt: skip
    for spec in sets:
        argv += ["--set", spec]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def our_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What mitmdump printed besides errorcheck's closing line, without the [time] prefix."""
    lines = (result.stdout + result.stderr).splitlines()
    return [line.split("] ", 1)[-1] for line in lines if line.strip() and line not in ERRORCHECK]


REGION_RULE = "expected HOST[:PORT]=REGION, REGION of lowercase letters, digits, '-' or '_' (at most 32)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # mitmproxy could not even convert these: the script was left half-loaded, no word.
        ("sinch_metrics_port=abc", "sinch_metrics_port=abc: not a whole number"),
        ("sinch_code_cap=abc", "sinch_code_cap=abc: not a whole number"),
        ("sinch_body_limit=abc", "sinch_body_limit=abc: not a whole number"),
        # these ended in a traceback from configure
        ("sinch_code_cap=-1", "sinch_code_cap=-1: must be 0 or more"),
        ("sinch_body_limit=0", "sinch_body_limit=0: must be at least 1 (byte)"),
        ("sinch_metrics_port=70000", "sinch_metrics_port=70000: not between 0 (no metrics) and 65535"),
        ("sinch_regions=bad", f"sinch_regions=bad: {REGION_RULE}"),
        ("sinch_latency_buckets=0.5,0.1", "sinch_latency_buckets=0.5,0.1: must be positive and strictly increasing"),
        ("sinch_latency_buckets=x", "sinch_latency_buckets=x: not comma-separated seconds"),
        ("sinch_upstream_timeout=soon", "sinch_upstream_timeout=soon: not a number of seconds"),
        (
            "sinch_hosts=(x",
            "sinch_hosts=(x: not a regular expression (missing ), unterminated subpattern at position 0)",
        ),
        ("sinch_metrics_web_config=/no/such/web.yml", "sinch_metrics_web_config=/no/such/web.yml: no such file"),
        # misspelt: passed silently
        ("sinch_metric_port=1", "unknown option sinch_metric_port (did you mean sinch_metrics_port?)"),
        ("sinch_nothing_like_it=1", "unknown option sinch_nothing_like_it"),
    ],
)  # fmt: skip
def test_a_bad_option_is_one_error_line_and_status_1(script: str, tmp_path: Path, spec: str, message: str) -> None:
    result = mitmdump(script, tmp_path, spec, "sinch_metrics_host=127.0.0.1")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert our_lines(result) == [message], output
    assert "Traceback" not in output


def test_every_bad_option_is_reported_not_just_the_first(script: str, tmp_path: Path) -> None:
    result = mitmdump(script, tmp_path, "sinch_code_cap=-1", "sinch_metric_port=1", "sinch_metrics_port=0")
    assert result.returncode == 1
    assert sorted(our_lines(result)) == [
        "sinch_code_cap=-1: must be 0 or more",
        "unknown option sinch_metric_port (did you mean sinch_metrics_port?)",
    ]


def test_a_bad_value_from_config_yaml_is_one_line_too(script: str, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("sinch_code_cap: -3\n")
    result = mitmdump(script, tmp_path, "sinch_metrics_port=0")
    assert result.returncode == 1
    assert our_lines(result) == ["sinch_code_cap=-3: must be 0 or more"]


def test_good_options_still_reach_the_addon(script: str, tmp_path: Path) -> None:
    listen, metrics = free_port(), free_port()
    with running(start_simulator(tmp_path)) as sim:
        upstream = f"127.0.0.1:{sim.ports['http']}"
        argv = [MITMDUMP, "-q", "-s", script, "--mode", f"reverse:http://{upstream}@{listen}",
                "--set", f"confdir={tmp_path / 'conf'}", "--set", "sinch_metrics_host=127.0.0.1",
                "--set", f"sinch_metrics_port={metrics}", "--set", "sinch_latency_buckets=0.5,2",
                "--set", "sinch_code_cap=1", "--set", "sinch_upstream_timeout=2.5",
                "--set", f"sinch_regions={upstream}=xx"]  # fmt: skip
        with running(start(argv, tmp_path / "mitmdump.log")) as proc:
            wait_for_port(metrics, proc=proc.popen)
            wait_for_port(listen, proc=proc.popen)
            for code in ("novel_one", "novel_two"):
                http("GET", f"http://127.0.0.1:{listen}{PLAN}/batches", headers={"X-Sinch-Sim": f"novel:{code}"})
            samples = scrape(metrics)
            log = proc.log()
    les = {dict(k[1]).get("le") for k in samples if k[0] == "sinch_sms_request_duration_seconds_bucket"}
    assert les == {"0.5", "2.0", "+Inf"}
    codes = {dict(k[1])["code"] for k in samples if k[0] == "sinch_sms_responses_total" and samples[k]}
    assert codes == {"novel_one", "other"}  # code cap 1
    assert total(samples, "sinch_sms_responses_total", region="xx") == 2
    assert "Traceback" not in log


def test_deferred_values_are_checked_before_mitmproxy_converts_them(caplog) -> None:
    """In-process: what mitmdump does with --set before the script declares the options."""
    with taddons.context() as tctx:
        tctx.options.set("sinch_metrics_port=abc", "sinch_code_cap=7", "sinch_metric_host=x", defer=True)
        addon = SinchSmsExporter()
        with caplog.at_level(logging.ERROR):
            tctx.master.addons.register(addon)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
            "unknown option sinch_metric_host (did you mean sinch_metrics_host?)",
            "sinch_metrics_port=abc: not a whole number",
        ]
        assert tctx.options.sinch_code_cap == 7  # the good one is applied
        assert tctx.options.sinch_metrics_port == 19880  # the bad one is dropped…
        assert addon._refused  # …and no /metrics is opened on the default port
        assert not tctx.options.deferred
