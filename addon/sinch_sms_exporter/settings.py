"""Every setting of the sidecar, declared once: flag, environment variable, mitmproxy option,
type, default, help and the one check that gives a bad value its one-line reason.

`sinch-sms-proxy` builds its flags and reads its variables from `TABLE` (cli.py); the addon
declares its `sinch_*` mitmproxy options from the same rows and checks them with the same
functions (mitm/addon.py). So `--code-cap -1`, `SINCH_PROXY_CODE_CAP=-1` and
`mitmdump … --set sinch_code_cap=-1` all end in the same reason, each naming where the value
came from (`message`).

Pure data and pure functions: no mitmproxy here (mitm/ turns the rows into options).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.contract.labels import DEFAULT_BUCKETS, DEFAULT_CODE_CAP

ENV_PREFIX = "SINCH_PROXY_"
DEFAULT_UPSTREAM = "https://us.sms.api.sinch.com"
DEFAULT_LISTEN_PORT = 8080
DEFAULT_METRICS_PORT = 19880
DEFAULT_UPSTREAM_TIMEOUT = 30.0
#: Seconds a stopping proxy may keep draining: under Kubernetes' default 30 s termination grace.
DEFAULT_SHUTDOWN_GRACE = 25.0
#: Error bodies are parsed for a code up to this many bytes (before and after decoding).
DEFAULT_BODY_LIMIT = 64 * 1024
#: The first callback listener's port (docs/architecture.md, "Contracts"); further ones count up.
DEFAULT_CALLBACK_PORT = 8090
#: Callback listeners listen on all interfaces: Sinch calls them from outside.
DEFAULT_CALLBACK_LISTEN_HOST = "0.0.0.0"
#: DEFAULT_BUCKETS as the option/flag text (what parse_buckets reads back).
DEFAULT_BUCKETS_SPEC = ",".join(f"{b:g}" for b in DEFAULT_BUCKETS)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_REGION = r"[a-z0-9][a-z0-9_-]{0,31}"
_REGION_RE = re.compile(_REGION)
_REGION_RULE = "lowercase letters, digits, '-' or '_' (at most 32)"


# --- the checks: option value → the value used, or ValueError(reason) ------------------------
# A reason is a phrase without the setting's name or value: `message` adds where it came from.


def whole_number(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError("not a whole number") from None


def _at_least(low: int, why: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < low:
            raise ValueError(why)
        return value

    return check


def _port(low: int, what: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= 65535:
            raise ValueError(f"not between {what} and 65535")
        return value

    return check


def boolean(text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError("expected true or false (1/0, yes/no, on/off)")
    return word in _TRUE


def _one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"choose from {', '.join(choices)}")
        return value

    return check


def _existing_file(value: str | None) -> str | None:
    if value and not Path(value).expanduser().is_file():
        raise ValueError("no such file")
    return value


def parse_timeout(text: str) -> float:
    """'2.5' → 2.5 seconds; a finite number ≥ 0 (0: no timeout)."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise ValueError("not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise ValueError("must be 0 (off) or more seconds")
    return seconds


def parse_grace(text: str) -> float:
    """'2.5' → 2.5 seconds of drain on shutdown; a finite number ≥ 0 (0: exit at once)."""
    try:
        return parse_timeout(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("0 (off)", "0 (exit at once)")) from None


def parse_buckets(spec: str) -> tuple[float, ...]:
    """'0.05,0.1,0.5' → (0.05, 0.1, 0.5)."""
    try:
        buckets = tuple(float(b) for b in spec.split(",") if b.strip())
    except ValueError:
        raise ValueError("not comma-separated seconds") from None
    if not buckets:
        raise ValueError("must not be empty")
    if any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError("must be positive and strictly increasing")
    return buckets


def parse_host_pattern(pattern: str) -> re.Pattern[str]:
    """A regex matched against the whole host name (case-insensitive)."""
    try:
        return re.compile(routes.host_pattern(pattern), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None


def parse_region(name: str) -> str:
    if not _REGION_RE.fullmatch(name):
        raise ValueError(f"a region is {_REGION_RULE}")
    return name


def parse_region_entry(entry: str) -> tuple[str, str]:
    """'eu.example.com=eu' or '127.0.0.1:9000=us' → (host[:port] in lowercase, region)."""
    host, sep, region = entry.rpartition("=")
    if not sep or not host or not _REGION_RE.fullmatch(region):
        raise ValueError(f"expected HOST[:PORT]=REGION, REGION of {_REGION_RULE}")
    return host.lower(), region


@dataclass(frozen=True)
class UpstreamSpec:
    """One --upstream value: `URL[@PORT]`."""

    url: str  # scheme://host[:port], no path
    host: str
    port: int  # the upstream's port
    listen_port: int | None  # given after '@', else the next free one in order


def parse_upstream(spec: str) -> UpstreamSpec:
    url, at, port_text = spec.rpartition("@") if "@" in spec.rsplit("/", 1)[-1] else (spec, "", "")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http(s)://HOST[:PORT], e.g. {DEFAULT_UPSTREAM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("give the base URL only (no path, query or credentials); the service keeps sending /xms/v1/…")
    listen_port = None
    if at:
        if not port_text.isdigit():
            raise ValueError("the listen port after '@' is not a number")
        listen_port = int(port_text)
    return UpstreamSpec(f"{parts.scheme}://{parts.netloc}", parts.hostname, port, listen_port)


def parse_callback_upstream(spec: str) -> UpstreamSpec:
    """One --callback-upstream value: the receiver's base `URL[@PORT]`, as for --upstream."""
    try:
        return parse_upstream(spec)
    except ValueError as exc:
        raise ValueError(
            str(exc).replace("the service keeps sending /xms/v1/…", "Sinch keeps calling your path")
        ) from None


@dataclass(frozen=True)
class CallbackListener:
    """One sinch_callback_upstreams entry, `URL@[HOST:]PORT`: a callback listener on
    [HOST:]PORT in front of the service's receiver at URL."""

    url: str  # the receiver's scheme://host[:port]
    listen: str  # [HOST:]PORT, as mitmproxy's mode spec takes it after '@'
    port: int

    @property
    def mode(self) -> str:
        """mitmproxy's mode spec of this listener (what `mode` gets, and a flow's proxy_mode says)."""
        return f"reverse:{self.url}@{self.listen}"


def parse_callback_entry(entry: str) -> CallbackListener:
    """'http://127.0.0.1:9000@0.0.0.0:8090' → CallbackListener; ValueError(reason)."""
    url, at, listen = entry.strip().rpartition("@")
    if not at:
        raise ValueError("expected URL@[HOST:]PORT, e.g. http://127.0.0.1:9000@0.0.0.0:8090")
    receiver = parse_callback_upstream(url)
    port = listen.rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("the listen port after '@' is not between 1 and 65535")
    return CallbackListener(receiver.url, listen, int(port))


def distinct_listen_ports(listeners: Sequence[CallbackListener]) -> list[CallbackListener]:
    """The listeners, or ValueError when two share a listen port."""
    ports = [listener.port for listener in listeners]
    if len(set(ports)) != len(ports):
        raise ValueError(f"two callback listeners share a listen port ({', '.join(map(str, ports))})")
    return list(listeners)


def parse_callback_listeners(entries: Iterable[str]) -> list[CallbackListener]:
    """Every sinch_callback_upstreams entry; ValueError for a bad one, or two on one port."""
    return distinct_listen_ports([parse_callback_entry(entry) for entry in entries])


def _as_is(value: str) -> str:
    return value


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting. `kind` is the value's type as mitmproxy sees it (int, str, Optional[str],
    Sequence[str]: a list, one `check` per item); flags, variables and `--set` give text,
    turned into that type by `convert`, then checked by `check` (which returns the form the
    code uses: seconds, buckets, a compiled pattern). The CLI keeps the converted value."""

    name: str  #: the flag without '--'; the variable is SINCH_PROXY_<NAME>
    help: str
    kind: Any
    default: Any  #: in `kind`'s type
    check: Callable[[Any], Any] = _as_is
    #: the mitmproxy option the flag sets as it is: a sinch_* one (declared by the addon from
    #: this row) or one of mitmproxy's own (listen_host, confdir, …)
    option: str | None = None
    #: options the CLI computes from this setting (the reverse-mode spec from --upstream, …)
    derived: tuple[str, ...] = ()
    flag: bool = True  #: sinch_regions has no flag: the CLI derives it from --upstream/--region
    metavar: str | None = None
    shown_default: str | None = None  #: in --help and the README, where the default is not literal

    @property
    def flag_name(self) -> str:
        return f"--{self.name}"

    @property
    def variable(self) -> str | None:
        return ENV_PREFIX + self.name.replace("-", "_").upper() if self.flag else None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def repeated(self) -> bool:
        return self.kind == Sequence[str]

    @property
    def ours(self) -> bool:
        """A sinch_* option, declared by the addon from this row."""
        return bool(self.option and self.option.startswith("sinch_"))

    def convert(self, text: str) -> Any:
        """Text from a flag, a variable or `--set` → the option's type (one item of a list)."""
        if self.kind is int:
            return whole_number(text)
        if self.kind is bool:
            return boolean(text)
        return text

    def parse(self, text: str) -> Any:
        """Text → the converted value, checked; ValueError(reason)."""
        value = self.convert(text)
        self.check(value)
        return value

    def checked(self, value: Any) -> Any:
        """An option value (a list for a repeated setting) → the form the code uses."""
        if self.repeated:
            return [self.check(item) for item in value]
        return self.check(value)

    @property
    def default_text(self) -> str | None:
        """The default as --help and the README show it (None: no default)."""
        if self.shown_default is not None:
            return self.shown_default
        if self.default in (None, False, []):
            return None
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


#: `user:secret@` in a URL (`scheme://user:secret@host`), not `host:443@8081` (a listen port).
_USERINFO = re.compile(r"(?<=://)[^/@\s:]*:(?!\d+@)[^/@\s]*@")


def message(where: str, value: Any, reason: str) -> str:
    """The one line for a bad value, naming where it came from: `--code-cap -1: must be 0 or
    more`, `SINCH_PROXY_CODE_CAP=-1: …`, `sinch_code_cap=-1: …`. A password in a URL is not
    repeated (the line reaches a terminal or a log)."""
    text = _USERINFO.sub("<redacted>@", value if isinstance(value, str) else str(value))
    if text == "" or text != text.strip() or any(c.isspace() or c in "'\"" for c in text):
        text = repr(text)
    return f"{where} {text}: {reason}" if where.startswith("-") else f"{where}={text}: {reason}"


def closest(name: str, known: Iterable[str], prefix: str) -> str | None:
    """The known name `name` is most likely a misspelling of, if any: compared without the
    shared prefix, which would make every name look alike."""
    tails = {k.removeprefix(prefix): k for k in known}
    close = difflib.get_close_matches(name.removeprefix(prefix), tails, n=1, cutoff=0.7)
    return tails[close[0]] if close else None


OptionalStr = Optional[str]  # noqa: UP045 - mitmproxy compares option types to Optional[str]

TABLE: tuple[Setting, ...] = (
    Setting(
        "upstream", "Sinch SMS API base URL to proxy (repeat for several regions, each on its own listener: "
        "@PORT, or the next port after --listen-port)",
        Sequence[str], [], parse_upstream, derived=("mode", "sinch_regions"),
        metavar="URL[@PORT]", shown_default=DEFAULT_UPSTREAM,
    ),
    Setting(
        "region", "region label of each --upstream, in the same order (default: from the host, "
        "{region}.sms.api.sinch.com or zt.{region}.sms.api.sinch.com; 'other' for other hosts)",
        Sequence[str], [], parse_region, derived=("sinch_regions",), metavar="NAME",
    ),
    Setting(
        "listen-host", "address the proxy listens on; a sidecar needs only loopback",
        str, "127.0.0.1", option="listen_host",
    ),
    Setting(
        "listen-port", "port of the (first) proxy listener",
        int, DEFAULT_LISTEN_PORT, _port(1, "1"), derived=("mode",),
    ),
    Setting(
        "metrics-host", "address of /metrics (all interfaces: Prometheus scrapes the pod from outside)",
        str, "0.0.0.0", option="sinch_metrics_host",
    ),
    Setting(
        "metrics-port", "port of /metrics, 0 for none (19880: outside the 9100-9999 exporter range, "
        "which is fully allocated)",
        int, DEFAULT_METRICS_PORT, _port(0, "0 (no metrics)"), option="sinch_metrics_port",
    ),
    Setting(
        "metrics-web-config", "exporter-toolkit style web config (tls_server_config, basic_auth_users "
        "with bcrypt hashes) protecting /metrics",
        OptionalStr, None, _existing_file, option="sinch_metrics_web_config", metavar="FILE",
    ),
    Setting(
        "mode", "reverse: the service's base URL points at the proxy; forward: the service uses the proxy "
        "as HTTPS_PROXY and trusts its CA; only --forward-hosts are decrypted",
        str, "reverse", _one_of("reverse", "forward"), derived=("mode", "allow_hosts"), metavar="reverse|forward",
    ),
    Setting(
        "forward-hosts", "forward mode: regex matched against the whole host name of the hosts that are "
        "decrypted and counted (default: both SMS host forms, {region}.sms.api.sinch.com for service-plan "
        "tokens and zt.{region}.sms.api.sinch.com for project/OAuth auth); all others pass through "
        "untouched, the OAuth token host auth.sinch.com included (it carries client secrets)",
        str, routes.SINCH_HOST_PATTERN, parse_host_pattern, option="sinch_hosts", derived=("allow_hosts",),
        metavar="REGEX", shown_default="[zt.]{region}.sms.api.sinch.com",
    ),
    Setting(
        "upstream-timeout", "time to wait for the upstream's response headers (connect included) before "
        "answering 502 and counting reason=\"timeout\" (0: forever)",
        # A string: mitmproxy's --set parses no float options.
        str, f"{DEFAULT_UPSTREAM_TIMEOUT:g}", parse_timeout, option="sinch_upstream_timeout", metavar="SECONDS",
    ),
    Setting(
        "shutdown-grace", "on SIGTERM or a first SIGINT, keep proxying until no call is in flight and "
        "/metrics was scraped since the last count (at once if never scraped), at most this long; a "
        "second signal stops at once (0: exit at once)",
        # A string, like upstream-timeout: mitmproxy's --set parses no float options.
        str, f"{DEFAULT_SHUTDOWN_GRACE:g}", parse_grace, option="sinch_shutdown_grace", metavar="SECONDS",
    ),
    Setting(
        "body-limit", "error bodies larger than this (encoded or decoded) are not parsed for a code; they "
        "count with code=\"\" (traffic is unaffected)",
        int, DEFAULT_BODY_LIMIT, _at_least(1, "must be at least 1 (byte)"), option="sinch_body_limit",
        metavar="BYTES",
    ),
    Setting(
        "code-cap", "distinct error codes outside Sinch's catalog kept; later novel codes count as "
        "code=\"other\"",
        int, DEFAULT_CODE_CAP, _at_least(0, "must be 0 or more"), option="sinch_code_cap", metavar="N",
    ),
    Setting(
        "callback-upstream", "the service's callback receiver (base URL): Sinch's delivery reports and "
        "inbound messages sent to the callback listener reach it unchanged and are counted (repeat for "
        f"several receivers, each on its own listener: @PORT, or {DEFAULT_CALLBACK_PORT} and up)",
        Sequence[str], [], parse_callback_upstream, derived=("mode", "sinch_callback_upstreams"),
        metavar="URL[@PORT]",
    ),
    Setting(
        "callback-listen-host", "address of the callback listeners (all interfaces: Sinch must reach them)",
        str, DEFAULT_CALLBACK_LISTEN_HOST, derived=("mode", "sinch_callback_upstreams"), metavar="HOST",
    ),
    Setting(
        "delivery-code-cap", "distinct delivery codes besides 0, 400-408 and 410-418 kept (operators' SMPP "
        "and MMS codes); later novel codes count as code=\"other\"",
        int, labels.DEFAULT_DELIVERY_CODE_CAP, _at_least(0, "must be 0 or more"), option="sinch_delivery_code_cap",
        metavar="N",
    ),
    Setting(
        "latency-buckets", "buckets (seconds, comma-separated, increasing) of "
        "sinch_sms_request_duration_seconds",
        str, DEFAULT_BUCKETS_SPEC, parse_buckets, option="sinch_latency_buckets", metavar="SECONDS,…",
    ),
    Setting(
        "upstream-ca", "extra CA bundle trusted for the upstream's certificate",
        OptionalStr, None, _existing_file, derived=("ssl_verify_upstream_trusted_ca",), metavar="PEM",
    ),
    Setting(
        "ssl-insecure", "do not verify the upstream's certificate (testing only)",
        bool, False, option="ssl_insecure",
    ),
    Setting(
        "confdir", "mitmproxy's directory (forward mode keeps its CA here)",
        str, "~/.mitmproxy", option="confdir",
    ),
    Setting(
        "log-level", "log verbosity",
        str, "info", _one_of("error", "warn", "info", "debug"), option="termlog_verbosity",
        metavar="error|warn|info|debug",
    ),
    Setting(
        "callback-upstreams", "URL@[HOST:]PORT: a callback listener on [HOST:]PORT in front of the service's "
        "callback receiver at URL (e.g. http://127.0.0.1:9000@0.0.0.0:8090). Sinch's callbacks pass "
        "unchanged and are counted by type, receiver status and delivery status. The addon adds the "
        "listener's reverse mode to `mode` itself. sinch-sms-proxy sets it from --callback-upstream and "
        "--callback-listen-host.",
        Sequence[str], [], parse_callback_entry, option="sinch_callback_upstreams", flag=False,
    ),
    Setting(
        "regions", "HOST[:PORT]=REGION: the region label of an upstream. Sinch hosts "
        "({region}.sms.api.sinch.com, zt.{region}.sms.api.sinch.com) need none; other upstreams "
        "without one are 'other'. "
        "sinch-sms-proxy sets it from --upstream and --region.",
        Sequence[str], [], parse_region_entry, option="sinch_regions", flag=False,
    ),
)  # fmt: skip

#: The rows with a CLI flag (and a SINCH_PROXY_* variable).
FLAGS: tuple[Setting, ...] = tuple(s for s in TABLE if s.flag)
#: The rows the addon declares as sinch_* mitmproxy options, by option name.
OPTIONS: dict[str, Setting] = {s.option: s for s in TABLE if s.ours and s.option}
#: Every SINCH_PROXY_* variable there is.
VARIABLES: dict[str, Setting] = {s.variable: s for s in FLAGS if s.variable}
