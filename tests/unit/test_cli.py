"""`sinch-sms-proxy`: flags and SINCH_PROXY_* variables read through the settings table, exit
codes (2: usage, 1: runtime) with one line each, `--help` and the README's flag table."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from sinch_sms_exporter import cli, settings
from tests.helpers.paths import PROXY, REPO
from tests.helpers.processes import free_port, running, start_proxy, start_simulator

ERROR = "sinch-sms-proxy: error: "


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(name)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """main() in-process: (exit status, stderr lines, stdout)."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, err.splitlines(), out


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (["--code-cap", "-1"], {}, "--code-cap -1: must be 0 or more"),
        ([], {"SINCH_PROXY_CODE_CAP": "-1"}, "SINCH_PROXY_CODE_CAP=-1: must be 0 or more"),
        (["--code-cap=-1"], {}, "--code-cap -1: must be 0 or more"),
        ([], {"SINCH_PROXY_LISTEN_PORT": "0"}, "SINCH_PROXY_LISTEN_PORT=0: not between 1 and 65535"),
        ([], {"SINCH_PROXY_METRICS_PORT": "70000"},
         "SINCH_PROXY_METRICS_PORT=70000: not between 0 (no metrics) and 65535"),
        (["--metrics-port", "x"], {}, "--metrics-port x: not a whole number"),
        ([], {"SINCH_PROXY_BODY_LIMIT": "0"}, "SINCH_PROXY_BODY_LIMIT=0: must be at least 1 (byte)"),
        ([], {"SINCH_PROXY_UPSTREAM_TIMEOUT": "-2"},
         "SINCH_PROXY_UPSTREAM_TIMEOUT=-2: must be 0 (off) or more seconds"),
        ([], {"SINCH_PROXY_LATENCY_BUCKETS": "2,1"},
         "SINCH_PROXY_LATENCY_BUCKETS=2,1: must be positive and strictly increasing"),
        ([], {"SINCH_PROXY_REGION": "us, Bad Region"},
         "SINCH_PROXY_REGION='Bad Region': a region is lowercase letters, digits, '-' or '_' (at most 32)"),
        ([], {"SINCH_PROXY_UPSTREAM": "https://us.sms.api.sinch.com,ftp://x"}, "SINCH_PROXY_UPSTREAM=ftp://x: expected "
         "http(s)://HOST[:PORT], e.g. https://us.sms.api.sinch.com"),
        ([], {"SINCH_PROXY_SSL_INSECURE": "maybe"}, "SINCH_PROXY_SSL_INSECURE=maybe: expected true or false "
         "(1/0, yes/no, on/off)"),
        ([], {"SINCH_PROXY_LOG_LEVEL": "loud"}, "SINCH_PROXY_LOG_LEVEL=loud: choose from error, warn, info, debug"),
        (["--log-level", "loud"], {}, "--log-level loud: choose from error, warn, info, debug"),
        (["--upstream-ca", "/no/such.pem"], {}, "--upstream-ca /no/such.pem: no such file"),
        (["--region", "us", "--region", "eu"], {}, "got 2 --region for 1 --upstream: give one per upstream, in order"),
        (["--upstream", "http://a:1@9000", "--upstream", "http://b:1@9000"], {},
         "two upstreams share a listen port (9000, 9000)"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_naming_the_flag_or_variable_and_exit_2(
    capsys, monkeypatch, argv: list[str], env: dict[str, str], line: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, err, out = run_main(capsys, *argv)
    assert (status, err, out) == (2, [ERROR + line], "")


def test_argparses_own_errors_are_one_line_and_exit_2(capsys) -> None:
    status, err, _ = run_main(capsys, "--no-such-flag")
    assert status == 2
    assert err == [f"{ERROR}unrecognized arguments: --no-such-flag (see sinch-sms-proxy --help)"]


def test_flags_win_over_variables_lists_included(monkeypatch) -> None:
    monkeypatch.setenv("SINCH_PROXY_UPSTREAM", "http://a.example,http://b.example")
    monkeypatch.setenv("SINCH_PROXY_REGION", "aa,bb")
    monkeypatch.setenv("SINCH_PROXY_CODE_CAP", "7")
    parser = cli.build_parser()
    parser.apply_environment(os.environ)
    args = parser.parse_args([])
    assert (args.upstream, args.region, args.code_cap) == (["http://a.example", "http://b.example"], ["aa", "bb"], 7)
    args = parser.parse_args(["--upstream", "http://c.example", "--region", "cc", "--code-cap", "8"])
    assert (args.upstream, args.region, args.code_cap) == (["http://c.example"], ["cc"], 8)


def test_a_misspelt_variable_is_one_warning_and_the_rest_runs(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SINCH_PROXY_LISTENPORT", "9000")
    monkeypatch.setenv("SINCH_PROXY_FOO", "1")
    status, err, out = run_main(capsys, "--print-addon-path")
    assert status == 0 and out.strip().endswith("mitmproxy_script.py")
    assert err == [
        "sinch-sms-proxy: warning: unknown variable SINCH_PROXY_FOO is ignored",
        "sinch-sms-proxy: warning: unknown variable SINCH_PROXY_LISTENPORT is ignored "
        "(did you mean SINCH_PROXY_LISTEN_PORT?)",
    ]


def test_runtime_errors_are_one_line_and_exit_1(capsys, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        busy = squatter.getsockname()[1]
        status, err, _ = run_main(
            capsys, "--listen-port", str(busy), "--metrics-port", "0", "--confdir", str(tmp_path / "conf")
        )
    assert (status, err) == (1, [f"{ERROR}proxy port 127.0.0.1:{busy} is already in use"])


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_the_options_are_the_tables_and_their_derived_ones(tmp_path: Path, mode: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    args = cli.build_parser().parse_args(
        ["--mode", mode, "--listen-port", str(free_port()), "--metrics-port", "0", "--confdir", str(tmp_path),
         "--upstream-ca", str(ca), "--code-cap", "9", "--upstream-timeout", "2.5"]
    )  # fmt: skip
    options = cli.settings_from(args)
    direct = {s.option for s in settings.FLAGS if s.option}
    derived = {o for s in settings.FLAGS for o in s.derived}
    assert direct <= set(options) <= direct | derived | {"connection_strategy"}
    assert {"mode", "ssl_verify_upstream_trusted_ca"} <= set(options)
    assert ("allow_hosts" in options) == (mode == "forward") and ("sinch_regions" in options) == (mode == "reverse")
    assert (options["sinch_code_cap"], options["sinch_upstream_timeout"]) == (9, "2.5")  # the options' own types


# --- --help ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def help_text() -> str:
    result = subprocess.run([PROXY, "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    return result.stdout


def test_help_fits_80_columns_and_breaks_no_default(help_text: str) -> None:
    assert max(len(line) for line in help_text.splitlines()) <= 80
    # A long default breaks after a comma only: glued back, each default is whole.
    glued = re.sub(r",\n\s+", ",", help_text)
    for setting in settings.FLAGS:
        if setting.default_text:
            assert setting.default_text in glued, setting.name
    assert settings.DEFAULT_BUCKETS_SPEC in glued
    assert not re.search(r"\d\n\s+[\d.]", help_text)  # never inside a number (was `0.02 5`)


def test_help_lists_every_flag_with_its_default_and_variable(help_text: str) -> None:
    flat = re.sub(r",\s+", ",", " ".join(help_text.split()))
    for setting in settings.FLAGS:
        assert f"{setting.flag_name} " in flat
        assert f"env {setting.variable}" in flat
        if setting.default_text is not None:
            assert f"default: {setting.default_text}]" in flat, setting.name
    assert "default: None" not in flat and "default: False" not in flat


def test_wrap_help_splits_only_plain_lists_after_commas() -> None:
    assert cli.wrap_help("a 1,2,3,4", 4) == ["a", "1,2,", "3,4"]
    assert cli.wrap_help("a (x{1,32})y", 4) == ["a", "(x{1,32})y"]  # not a plain list: kept whole


# --- the README's flag table ---------------------------------------------------------------------

#: README defaults written for people, where the literal one would not read well in a table.
README_DEFAULTS = {
    "forward-hosts": "`{region}.sms.api.sinch.com` and `zt.{region}.sms.api.sinch.com`",
    "latency-buckets": "see above",
}


def readme_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        match = re.match(r"`(--[a-z-]+)", cells[0]) if cells else None
        if match:
            rows[match.group(1)] = cells
    return rows


def test_the_readme_flag_table_is_the_settings_table() -> None:
    rows = readme_rows()
    assert set(rows) == {s.flag_name for s in settings.FLAGS} | {"--print-addon-path"}
    for setting in settings.FLAGS:
        flag, variable, option, default, _ = rows[setting.flag_name]
        assert variable == f"`{setting.variable}`", setting.name
        if setting.ours:
            assert option == f"`{setting.option}`", setting.name
        else:
            assert not option.startswith("`sinch_") or setting.name == "region", setting.name
        if setting.name in README_DEFAULTS:
            assert default == README_DEFAULTS[setting.name]
        elif setting.default_text is not None:
            assert default == f"`{setting.default_text}`", setting.name
        else:
            assert not default.startswith("`"), setting.name
        if setting.metavar and "|" not in setting.metavar:
            assert flag == f"`{setting.flag_name} {setting.metavar}`" or setting.name == "latency-buckets"


def test_the_readme_lists_the_bucket_default_and_every_sinch_option() -> None:
    text = (REPO / "README.md").read_text()
    buckets = re.search(r"Latency buckets \(seconds\): `([^`]+)`", text)
    assert buckets and ",".join(buckets.group(1).split()) == settings.DEFAULT_BUCKETS_SPEC
    mitmdump = text.split("## Plain mitmproxy", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{option}`" in mitmdump for option in settings.OPTIONS)


# --- the real command ----------------------------------------------------------------------------


def test_the_command_names_the_variable_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings.ENV_PREFIX)}
    result = subprocess.run(
        [PROXY], capture_output=True, text=True, timeout=60, env={**env, "SINCH_PROXY_CODE_CAP": "-1"}
    )
    assert (result.returncode, result.stderr, result.stdout) == (
        2,
        f"{ERROR}SINCH_PROXY_CODE_CAP=-1: must be 0 or more\n",
        "",
    )


@pytest.mark.e2e
def test_the_proxy_starts_despite_a_misspelt_variable_and_says_so_once(tmp_path: Path) -> None:
    with (
        running(start_simulator(tmp_path)) as sim,
        running(
            start_proxy(tmp_path, f"http://127.0.0.1:{sim.ports['http']}", env={"SINCH_PROXY_LISTENPORT": "1"})
        ) as proxy,
    ):
        log = proxy.log()
    warning = "sinch-sms-proxy: warning: unknown variable SINCH_PROXY_LISTENPORT is ignored "
    assert [line for line in log.splitlines() if "SINCH_PROXY_" in line] == [
        warning + "(did you mean SINCH_PROXY_LISTEN_PORT?)"
    ]
