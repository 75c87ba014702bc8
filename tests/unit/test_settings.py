"""The settings table: every check's good and bad values with their exact reasons, and the
mitmproxy options and CLI flags both built from the same rows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from sinch_sms_exporter import cli, settings
from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.metrics import DEFAULT_BUCKETS
from sinch_sms_exporter.mitm.addon import SinchSmsExporter

ROWS = {s.name: s for s in settings.TABLE}

# The contract: these names must not change (flags, variables, sinch_* options and types).
FLAGS = {
    "--upstream", "--region", "--listen-host", "--listen-port", "--metrics-host", "--metrics-port",
    "--metrics-web-config", "--mode", "--forward-hosts", "--upstream-timeout", "--body-limit", "--code-cap",
    "--latency-buckets", "--upstream-ca", "--ssl-insecure", "--confdir", "--log-level", "--shutdown-grace",
    "--callback-upstream", "--callback-listen-host", "--delivery-code-cap",
}  # fmt: skip
OPTION_TYPES = {
    "sinch_metrics_host": str,
    "sinch_metrics_port": int,
    "sinch_metrics_web_config": Optional[str],  # noqa: UP045 - the type mitmproxy compares against
    "sinch_body_limit": int,
    "sinch_code_cap": int,
    "sinch_latency_buckets": str,
    "sinch_regions": Sequence[str],
    "sinch_hosts": str,
    "sinch_upstream_timeout": str,  # a string: mitmproxy's --set parses no floats
    "sinch_shutdown_grace": str,  # likewise
    "sinch_callback_upstreams": Sequence[str],
    "sinch_delivery_code_cap": int,
}
DEFAULTS = {
    "upstream": [],
    "region": [],
    "listen-host": "127.0.0.1",
    "listen-port": 8080,
    "metrics-host": "0.0.0.0",
    "metrics-port": 19880,
    "metrics-web-config": None,
    "mode": "reverse",
    "forward-hosts": routes.SINCH_HOST_PATTERN,
    "upstream-timeout": "30",
    "shutdown-grace": "25",
    "body-limit": 65536,
    "code-cap": 50,
    "latency-buckets": "0.01,0.025,0.05,0.075,0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.75,1,1.5,2.5,5,10,30",
    "upstream-ca": None,
    "ssl-insecure": False,
    "confdir": "~/.mitmproxy",
    "log-level": "info",
    "regions": [],
    "callback-upstream": [],
    "callback-listen-host": "0.0.0.0",
    "delivery-code-cap": 50,
    "callback-upstreams": [],
}


def test_the_flags_variables_options_and_defaults_are_the_contracts() -> None:
    assert {s.flag_name for s in settings.FLAGS} == FLAGS
    assert set(settings.VARIABLES) == {"SINCH_PROXY_" + f[2:].replace("-", "_").upper() for f in FLAGS}
    assert {name: s.kind for name, s in settings.OPTIONS.items()} == OPTION_TYPES
    assert {name: s.default for name, s in ROWS.items()} == DEFAULTS
    assert ROWS["forward-hosts"].option == "sinch_hosts"
    assert ROWS["regions"].variable is None and not ROWS["regions"].flag


def test_each_setting_is_declared_once() -> None:
    names = [s.name for s in settings.TABLE]
    options = [s.option for s in settings.TABLE if s.option]
    assert len(names) == len(set(names)) and len(options) == len(set(options))


@pytest.mark.parametrize("setting", settings.TABLE, ids=lambda s: s.name)
def test_every_default_passes_its_own_check(setting: settings.Setting) -> None:
    setting.checked(setting.default)
    # A shown_default describes the default in words (forward-hosts: both host forms) instead of
    # quoting it; a literal one must read back as the default.
    literal = setting.shown_default is None
    if setting.default_text is not None and literal and not setting.repeated and setting.kind is not bool:
        assert setting.parse(setting.default_text) == setting.default


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("listen-port", "abc", "not a whole number"),
        ("listen-port", "1.5", "not a whole number"),
        ("listen-port", "0", "not between 1 and 65535"),
        ("listen-port", "65536", "not between 1 and 65535"),
        ("metrics-port", "-1", "not between 0 (no metrics) and 65535"),
        ("metrics-port", "nine", "not a whole number"),
        ("body-limit", "0", "must be at least 1 (byte)"),
        ("code-cap", "-1", "must be 0 or more"),
        ("code-cap", "abc", "not a whole number"),
        ("upstream-timeout", "soon", "not a number of seconds"),
        ("upstream-timeout", "-1", "must be 0 (off) or more seconds"),
        ("shutdown-grace", "soon", "not a number of seconds"),
        ("shutdown-grace", "-1", "must be 0 (exit at once) or more seconds"),
        ("upstream-timeout", "inf", "must be 0 (off) or more seconds"),
        ("upstream-timeout", "nan", "must be 0 (off) or more seconds"),
        ("latency-buckets", "0.1,abc", "not comma-separated seconds"),
        ("latency-buckets", " , ", "must not be empty"),
        ("latency-buckets", "0.5,0.1", "must be positive and strictly increasing"),
        ("latency-buckets", "0,1", "must be positive and strictly increasing"),
        ("latency-buckets", "1,1", "must be positive and strictly increasing"),
        ("mode", "sideways", "choose from reverse, forward"),
        ("log-level", "loud", "choose from error, warn, info, debug"),
        ("forward-hosts", "(unclosed", "not a regular expression (missing ), unterminated subpattern at position 0)"),
        ("metrics-web-config", "/no/such/web.yml", "no such file"),
        ("upstream-ca", "/no/such/ca.pem", "no such file"),
        ("region", "Bad Region", "a region is lowercase letters, digits, '-' or '_' (at most 32)"),
        ("region", "x" * 33, "a region is lowercase letters, digits, '-' or '_' (at most 32)"),
        ("upstream", "ftp://x", "expected http(s)://HOST[:PORT], e.g. https://us.sms.api.sinch.com"),
        ("upstream", "https://", "expected http(s)://HOST[:PORT], e.g. https://us.sms.api.sinch.com"),
        ("upstream", "https://h:99999", "the port is not a number between 0 and 65535"),
        ("upstream", "https://h@x", "the listen port after '@' is not a number"),
        (
            "upstream",
            "https://h/xms/v1",
            "give the base URL only (no path, query or credentials); the service keeps sending /xms/v1/…",
        ),
        ("upstream", "https://user:pw@h/", "give the base URL only (no path, query or credentials); "
         "the service keeps sending /xms/v1/…"),
        ("regions", "no-equals-sign", "expected HOST[:PORT]=REGION, REGION of lowercase letters, digits, '-' "
         "or '_' (at most 32)"),
        ("regions", "host=Bad", "expected HOST[:PORT]=REGION, REGION of lowercase letters, digits, '-' "
         "or '_' (at most 32)"),
    ],
)  # fmt: skip
def test_bad_values_get_their_exact_reason(name: str, text: str, reason: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        ROWS[name].parse(text)
    assert str(excinfo.value) == reason


@pytest.mark.parametrize(
    ("name", "text", "value", "used"),
    [
        ("listen-port", "1", 1, 1),
        ("metrics-port", "0", 0, 0),
        ("body-limit", "1", 1, 1),
        ("code-cap", "0", 0, 0),
        ("upstream-timeout", "2.5", "2.5", 2.5),
        ("upstream-timeout", "0", "0", 0.0),
        ("latency-buckets", "0.5, 2", "0.5, 2", (0.5, 2.0)),
        ("mode", "forward", "forward", "forward"),
        ("log-level", "debug", "debug", "debug"),
        ("region", "eu-2", "eu-2", "eu-2"),
        ("regions", "EU.Example.com:9000=eu", "EU.Example.com:9000=eu", ("eu.example.com:9000", "eu")),
        ("metrics-host", "::", "::", "::"),
    ],
)
def test_good_values_convert_and_check(name: str, text: str, value: object, used: object) -> None:
    setting = ROWS[name]
    assert setting.parse(text) == value
    assert setting.check(value) == used


def test_host_patterns_compile_case_insensitive_and_match_whole_names() -> None:
    pattern = ROWS["forward-hosts"].check(r"api\.example\.com")
    assert pattern.fullmatch("API.example.com") and not pattern.fullmatch("xapi.example.com")


def test_upstreams_parse_into_url_host_port_and_listen_port() -> None:
    item = settings.parse_upstream("http://127.0.0.1:9000@8123")
    assert (item.url, item.host, item.port, item.listen_port) == ("http://127.0.0.1:9000", "127.0.0.1", 9000, 8123)
    item = settings.parse_upstream("https://eu.sms.api.sinch.com/")
    assert (item.url, item.port, item.listen_port) == ("https://eu.sms.api.sinch.com", 443, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("True", True), ("yes", True), (" ON ", True), ("0", False), ("false", False), ("off", False)],
)
def test_booleans_read_every_usual_spelling(text: str, expected: bool) -> None:
    assert settings.boolean(text) is expected


def test_the_message_names_where_the_value_came_from() -> None:
    reason = "must be 0 or more"
    assert settings.message("--code-cap", "-1", reason) == "--code-cap -1: must be 0 or more"
    assert settings.message("SINCH_PROXY_CODE_CAP", "-1", reason) == "SINCH_PROXY_CODE_CAP=-1: must be 0 or more"
    assert settings.message("sinch_code_cap", -1, reason) == "sinch_code_cap=-1: must be 0 or more"
    # A value that would be ambiguous bare is quoted.
    assert settings.message("--region", "Bad Region", "x") == "--region 'Bad Region': x"
    assert settings.message("sinch_code_cap", "", "x") == "sinch_code_cap='': x"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("https://user:s3cret@eu.sms.api.sinch.com", "https://<redacted>@eu.sms.api.sinch.com"),
        ("https://user:s3cret@host@8081", "https://<redacted>@host@8081"),
        ("https://eu.sms.api.sinch.com:443@8081", "https://eu.sms.api.sinch.com:443@8081"),
        ("http://127.0.0.1:9000@0.0.0.0:8090", "http://127.0.0.1:9000@0.0.0.0:8090"),
    ],
)
def test_a_password_in_a_url_is_not_repeated_in_the_message(value: str, shown: str) -> None:
    assert settings.message("--upstream", value, "why") == f"--upstream {shown}: why"


def test_default_texts_are_what_help_and_readme_show() -> None:
    assert ROWS["upstream"].default_text == "https://us.sms.api.sinch.com"
    assert ROWS["latency-buckets"].default_text == ",".join(f"{b:g}" for b in DEFAULT_BUCKETS)
    assert ROWS["metrics-web-config"].default_text is None and ROWS["ssl-insecure"].default_text is None
    assert ROWS["region"].default_text is None


# --- both paths from the same rows ------------------------------------------------------------


def test_the_addon_declares_every_sinch_option_from_its_row() -> None:
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx:
        declared = {name: o for name, o in tctx.options._options.items() if name.startswith("sinch_")}
        assert set(declared) == set(settings.OPTIONS)
        for name, option in declared.items():
            row = settings.OPTIONS[name]
            assert (option.typespec, option.default, option.help) == (row.kind, row.default, row.help)


def test_the_cli_builds_every_flag_from_its_row() -> None:
    parser = cli.build_parser()
    actions = {a.option_strings[0]: a for a in parser._actions}
    for setting in settings.FLAGS:
        action = actions[setting.flag_name]
        assert action.dest == setting.dest
        assert action.default == setting.default
        assert action.help.startswith(setting.help)
    assert {variable for _, variable in parser.variables} == set(settings.VARIABLES)


def _cli_reason(flag: str, text: str) -> str:
    with pytest.raises(cli.UsageError) as excinfo:
        cli.build_parser().parse_args([flag, text])
    prefix = f"{flag} {text}: "
    assert str(excinfo.value).startswith(prefix)
    return str(excinfo.value).removeprefix(prefix)


def _option_reason(option: str, value: object) -> str:
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sinch_metrics_port=0)
        with pytest.raises(exceptions.OptionsError) as excinfo:
            tctx.configure(addon, **{option: value})
    prefix = f"{option}={value}: "
    assert str(excinfo.value).startswith(prefix)
    return str(excinfo.value).removeprefix(prefix)


@pytest.mark.parametrize(
    ("flag", "text", "value"),
    [
        ("--code-cap", "-1", -1),
        ("--body-limit", "0", 0),
        ("--metrics-port", "70000", 70000),
        ("--upstream-timeout", "soon", "soon"),
        ("--upstream-timeout", "-1", "-1"),
        ("--latency-buckets", "0.5,0.1", "0.5,0.1"),
        ("--latency-buckets", "0.1,abc", "0.1,abc"),
        ("--forward-hosts", "(unclosed", "(unclosed"),
        ("--metrics-web-config", "/no/such/web.yml", "/no/such/web.yml"),
    ],
)
def test_a_bad_value_gets_the_same_reason_as_flag_and_as_option(flag: str, text: str, value: object) -> None:
    setting = next(s for s in settings.FLAGS if s.flag_name == flag)
    assert setting.option is not None
    reason = _cli_reason(flag, text)
    assert reason == _option_reason(setting.option, value)
    assert re.fullmatch(r"[^\n]+", reason)


def test_a_bad_region_entry_names_the_option_and_the_entry(tmp_path) -> None:
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError) as excinfo:
        tctx.configure(addon, sinch_regions=["a.example=eu", "b.example=Bad"])
    assert str(excinfo.value) == (
        "sinch_regions=b.example=Bad: expected HOST[:PORT]=REGION, REGION of lowercase letters, digits, "
        "'-' or '_' (at most 32)"
    )


def test_a_web_config_that_exists_but_is_wrong_names_the_option(tmp_path) -> None:
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users: [unclosed\n")
    addon = SinchSmsExporter()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError) as excinfo:
        tctx.configure(addon, sinch_metrics_web_config=str(config))
    message = str(excinfo.value)
    assert message.startswith(f"sinch_metrics_web_config={config}: metrics web config {config} is not valid YAML")
    assert "\n" not in message.strip()


@pytest.mark.parametrize(
    ("name", "known", "prefix", "expected"),
    [
        ("sinch_metric_port", settings.OPTIONS, "sinch_", "sinch_metrics_port"),
        ("sinch_region", settings.OPTIONS, "sinch_", "sinch_regions"),
        ("sinch_nothing_like_it", settings.OPTIONS, "sinch_", None),
        ("SINCH_PROXY_LISTENPORT", settings.VARIABLES, "SINCH_PROXY_", "SINCH_PROXY_LISTEN_PORT"),
        ("SINCH_PROXY_METRICS_PROT", settings.VARIABLES, "SINCH_PROXY_", "SINCH_PROXY_METRICS_PORT"),
        ("SINCH_PROXY_FOO", settings.VARIABLES, "SINCH_PROXY_", None),
    ],
)
def test_a_misspelt_name_finds_its_closest_known_one(name: str, known, prefix: str, expected: str | None) -> None:
    assert settings.closest(name, known, prefix) == expected
