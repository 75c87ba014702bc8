"""`sinch-sms-proxy`: friendly flags (and SINCH_PROXY_* environment variables) → mitmproxy
options, then the lean sidecar proxy.

Wrong input ends with one line on stderr and a non-zero exit (2: usage, 1: runtime),
never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sinch_sms_exporter import __version__
from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.classify.responses import DEFAULT_BODY_LIMIT
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.metrics import DEFAULT_BUCKETS_SPEC, DEFAULT_CODE_CAP, parse_buckets
from sinch_sms_exporter.mitm.addon import (
    DEFAULT_CALLBACK_LISTEN_HOST,
    DEFAULT_CALLBACK_PORT,
    DEFAULT_METRICS_PORT,
    DEFAULT_UPSTREAM_TIMEOUT,
    parse_callback_modes,
    parse_region_map,
)

PROG = "sinch-sms-proxy"
ENV_PREFIX = "SINCH_PROXY_"
DEFAULT_UPSTREAM = "https://us.sms.api.sinch.com"
DEFAULT_LISTEN_PORT = 8080


class UsageError(Exception):
    """Bad flags or environment: reported in one line, exit status 2."""


@dataclass(frozen=True)
class Upstream:
    url: str  # scheme://host[:port], no path
    host: str
    port: int  # the upstream's port
    listen_port: int  # where the proxy listens for it
    region: str


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(ENV_PREFIX + name)
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_KINDS = {int: "a whole number", float: "a number"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block drowns the message), and
    every option has a SINCH_PROXY_<FLAG> variable, checked as strictly as the flag."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (action, variable name) of every option settable from the environment.
        self.variables: list[tuple[argparse.Action, str]] = []

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def option(self, flag: str, *, env: bool = True, shown_default: Any = None, **kwargs: Any) -> None:
        """add_argument, with the default and the environment variable in the help text."""
        default = kwargs.get("default") if shown_default is None else shown_default
        notes = [f"default: {default}"] if default not in (None, False) else []
        variable = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
        if env:
            notes.append(f"env {variable}")
        help_text = kwargs.pop("help")
        if notes:
            help_text += " [" + "; ".join(notes).replace("%", "%%") + "]"
        action = self.add_argument(flag, help=help_text, **kwargs)
        if env:
            self.variables.append((action, variable))

    def apply_environment(self, environ: Mapping[str, str]) -> None:
        """Set variables become defaults (so flags win). A bad value is a UsageError naming
        the variable: argparse checks neither `choices` nor booleans of defaults."""
        for action, variable in self.variables:
            raw = environ.get(variable, "")
            if raw.strip() and action.dest not in _LIST_OPTIONS:
                self.set_defaults(**{action.dest: _env_value(action, variable, raw.strip())})


#: Repeatable flags: their variables are comma-separated lists, read in settings_from (an
#: argparse default list would be appended to by the flags instead of replaced).
_LIST_OPTIONS = ("upstream", "region", "callback_upstream")


def _env_value(action: argparse.Action, variable: str, raw: str) -> Any:
    if action.nargs == 0:  # store_true
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise UsageError(f"{variable}={raw!r}: expected true or false (1/0, yes/no, on/off)")
    value: Any = raw
    if action.type is not None:
        try:
            value = action.type(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{variable}={raw!r}: not {_KINDS.get(action.type, 'valid')}") from None
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"{variable}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return value


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="A sidecar proxy for the Sinch SMS REST API that counts every answer by HTTP "
        "status and error code and serves them as Prometheus metrics. Point your service's Sinch "
        "base URL at http://LISTEN-HOST:LISTEN-PORT. Every flag can also be set by the "
        f"environment variable {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}METRICS_PORT=9000; lists "
        "comma-separated); flags win.",
    )
    add = parser.option
    add(
        "--upstream",
        action="append",
        metavar="URL[@PORT]",
        shown_default=DEFAULT_UPSTREAM,
        help="Sinch SMS API base URL to proxy (repeat for several regions, each on its own "
        "listener: @PORT, or the next port after --listen-port)",
    )
    add(
        "--region",
        action="append",
        metavar="NAME",
        help="region label of each --upstream, in the same order (default: from the host, "
        "{region}.sms.api.sinch.com; 'other' for other hosts)",
    )
    add("--listen-host", default="127.0.0.1", help="address the proxy listens on; a sidecar needs only loopback")
    add("--listen-port", type=int, default=DEFAULT_LISTEN_PORT, help="port of the (first) proxy listener")
    add(
        "--metrics-host",
        default="0.0.0.0",
        help="address of /metrics (all interfaces: Prometheus scrapes the pod from outside)",
    )
    add(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="port of /metrics, 0 for none (19880: outside the 9100-9999 exporter range, which is fully allocated)",
    )
    add(
        "--metrics-web-config",
        metavar="FILE",
        help="exporter-toolkit style web config (TLS, basic auth) protecting /metrics",
    )
    add(
        "--mode",
        choices=("reverse", "forward"),
        default="reverse",
        help="reverse: the service's base URL points at the proxy; forward: the service uses "
        "the proxy as HTTPS_PROXY and trusts its CA; only --forward-hosts are decrypted",
    )
    add(
        "--forward-hosts",
        default=routes.SINCH_HOST_PATTERN,
        metavar="REGEX",
        help="forward mode: regex matched against the whole host name of the hosts that are decrypted "
        "and counted; all others pass through untouched",
    )
    add(
        "--upstream-timeout",
        type=float,
        default=DEFAULT_UPSTREAM_TIMEOUT,
        metavar="SECONDS",
        help="time to wait for the upstream's response headers before answering 502 (0: forever)",
    )
    add(
        "--body-limit",
        type=int,
        default=DEFAULT_BODY_LIMIT,
        metavar="BYTES",
        help="error bodies larger than this are not parsed for a code (traffic is unaffected)",
    )
    add(
        "--code-cap",
        type=int,
        default=DEFAULT_CODE_CAP,
        metavar="N",
        help="distinct non-catalog error codes kept before the rest become 'other'",
    )
    add(
        "--latency-buckets",
        default=DEFAULT_BUCKETS_SPEC,
        metavar="SECONDS,…",
        help="histogram buckets of sinch_sms_request_duration_seconds",
    )
    add(
        "--callback-upstream",
        action="append",
        metavar="URL[@PORT]",
        help="the service's callback receiver (base URL): Sinch's delivery reports and inbound "
        "messages sent to the callback listener reach it unchanged and are counted (repeat for "
        f"several receivers, each on its own listener: @PORT, or {DEFAULT_CALLBACK_PORT} and up)",
    )
    add(
        "--callback-listen-host",
        default=DEFAULT_CALLBACK_LISTEN_HOST,
        help="address of the callback listeners (all interfaces: Sinch must reach them)",
    )
    add(
        "--delivery-code-cap",
        type=int,
        default=labels.DEFAULT_DELIVERY_CODE_CAP,
        metavar="N",
        help="distinct delivery codes besides 0, 400-408, 410-418 kept before the rest become 'other'",
    )
    add("--upstream-ca", metavar="PEM", help="extra CA bundle trusted for the upstream's certificate")
    add("--ssl-insecure", action="store_true", help="do not verify the upstream's certificate (testing only)")
    add("--confdir", default="~/.mitmproxy", help="mitmproxy's directory (forward mode keeps its CA here)")
    add("--log-level", default="info", choices=("error", "warn", "info", "debug"), help="log verbosity")
    add(
        "--print-addon-path",
        env=False,
        action="store_true",
        help="print the path of the addon script for `mitmdump -s` and exit",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def parse_upstreams(
    urls: Sequence[str], regions: Sequence[str], first_port: int, source: str = "--upstream"
) -> list[Upstream]:
    """The upstreams and their listeners; `source` names where the URLs came from in errors."""
    if regions and len(regions) != len(urls):
        raise UsageError(f"got {len(regions)} --region for {len(urls)} --upstream: give one per upstream, in order")
    upstreams: list[Upstream] = []
    next_port = first_port
    for i, spec in enumerate(urls):
        url, at, port_text = spec.rpartition("@") if "@" in spec.rsplit("/", 1)[-1] else (spec, "", "")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UsageError(f"bad {source} {spec!r}: the port is not a number") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bad {source} {spec!r}: expected http(s)://HOST[:PORT], e.g. {DEFAULT_UPSTREAM}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            sender = (
                "Sinch keeps calling your callback path"
                if "CALLBACK" in source.upper()
                else ("the service keeps sending /xms/v1/…")
            )
            raise UsageError(f"bad {source} {spec!r}: give the base URL only (no path, query or credentials); {sender}")
        if at:
            if not port_text.isdigit():
                raise UsageError(f"bad {source} {spec!r}: the listen port after '@' is not a number")
            listen_port = int(port_text)
        else:
            listen_port = next_port
        next_port = listen_port + 1
        region = regions[i] if regions else (routes.region_of_host(parts.hostname) or labels.OTHER)
        upstreams.append(Upstream(f"{parts.scheme}://{parts.netloc}", parts.hostname, port, listen_port, region))
    ports = [u.listen_port for u in upstreams]
    if len(set(ports)) != len(ports):
        raise UsageError(f"two upstreams share a listen port ({', '.join(map(str, ports))})")
    return upstreams


def _check_port(host: str, port: int, what: str) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"{what} port {port} is not between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UsageError(f"{what} address {host!r} is not a local address") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeError(f"{what} port {host}:{port} is already in use") from None
            raise RuntimeError(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from None


def _check_confdir(confdir: Path) -> None:
    """mitmproxy creates its CA in the confdir at start, even in reverse mode, and fails with a
    traceback where it cannot (a read-only root filesystem in a container): say so in one line."""
    if (confdir / "mitmproxy-ca.pem").is_file():
        return  # an existing CA (e.g. a mounted secret) is only read
    try:
        confdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeError(
            f"cannot create --confdir {confdir} ({exc.strerror}): mitmproxy keeps its CA there; "
            "give a writable directory (in a container: a volume)"
        ) from None
    if not os.access(confdir, os.W_OK | os.X_OK):
        raise RuntimeError(f"--confdir {confdir} is not writable: mitmproxy keeps its CA there")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the arguments and turn them into mitmproxy options."""
    source = "--upstream" if args.upstream else f"{ENV_PREFIX}UPSTREAM"
    urls = args.upstream or _env_list("UPSTREAM") or [DEFAULT_UPSTREAM]
    regions = args.region or _env_list("REGION") or []
    upstreams = parse_upstreams(urls, regions, args.listen_port, source)
    try:
        parse_buckets(args.latency_buckets)
        parse_region_map([f"{u.host}:{u.port}={u.region}" for u in upstreams])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        re.compile(args.forward_hosts)
    except re.error as exc:
        raise UsageError(f"bad --forward-hosts {args.forward_hosts!r}: {exc}") from None
    if args.body_limit < 1:
        raise UsageError("--body-limit must be at least 1 byte")
    if args.code_cap < 0:
        raise UsageError("--code-cap must be 0 or more")
    if args.delivery_code_cap < 0:
        raise UsageError("--delivery-code-cap must be 0 or more")
    callback_source = "--callback-upstream" if args.callback_upstream else f"{ENV_PREFIX}CALLBACK_UPSTREAM"
    receivers = parse_upstreams(
        args.callback_upstream or _env_list("CALLBACK_UPSTREAM") or [], [], DEFAULT_CALLBACK_PORT, callback_source
    )
    callback_entries = [f"{r.url}@{args.callback_listen_host}:{r.listen_port}" for r in receivers]
    try:
        callback_modes = parse_callback_modes(callback_entries)
    except ValueError as exc:
        raise UsageError(f"bad {callback_source}: {exc}") from None
    if args.upstream_timeout < 0:
        raise UsageError("--upstream-timeout must be 0 (off) or more seconds")
    for path, flag in (
        (args.upstream_ca, "--upstream-ca"),
        (args.metrics_web_config, "--metrics-web-config"),
    ):
        if path and not Path(path).expanduser().is_file():
            raise UsageError(f"{flag} {path}: no such file")
    _check_confdir(Path(args.confdir).expanduser())

    settings: dict[str, Any] = {
        "listen_host": args.listen_host,
        "connection_strategy": "lazy",  # so a refused upstream gets the client a 502
        "termlog_verbosity": args.log_level,
        "confdir": args.confdir,
        "ssl_insecure": args.ssl_insecure,
        "sinch_metrics_host": args.metrics_host,
        "sinch_metrics_port": args.metrics_port,
        "sinch_metrics_web_config": args.metrics_web_config,
        "sinch_body_limit": args.body_limit,
        "sinch_code_cap": args.code_cap,
        "sinch_delivery_code_cap": args.delivery_code_cap,
        "sinch_callback_upstreams": callback_entries,
        "sinch_latency_buckets": args.latency_buckets,
        "sinch_upstream_timeout": f"{args.upstream_timeout:g}",
    }
    if args.upstream_ca:
        settings["ssl_verify_upstream_trusted_ca"] = str(Path(args.upstream_ca).expanduser())
    if args.mode == "forward":
        settings["mode"] = [f"regular@{args.listen_port}"]
        # Everything else is tunnelled, not decrypted.
        settings["allow_hosts"] = [routes.allow_hosts_pattern(args.forward_hosts)]
        settings["sinch_hosts"] = args.forward_hosts
        listeners = [args.listen_port]
    else:
        settings["mode"] = [f"reverse:{u.url}@{u.listen_port}" for u in upstreams]
        settings["sinch_regions"] = [f"{u.host}:{u.port}={u.region}" for u in upstreams]
        listeners = [u.listen_port for u in upstreams]
    settings["mode"] += callback_modes
    clash = set(listeners) & {r.listen_port for r in receivers}
    if clash:
        raise UsageError(f"a callback listener and a proxy listener share port {min(clash)}")
    for port in listeners:
        _check_port(args.listen_host, port, "proxy")
    for receiver in receivers:
        _check_port(args.callback_listen_host, receiver.listen_port, "callback")
    if args.metrics_port:
        _check_port(args.metrics_host, args.metrics_port, "metrics")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        parser.apply_environment(os.environ)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line error
        return int(exc.code or 0)
    if args.print_addon_path:
        print(Path(__file__).with_name("mitmproxy_script.py"))
        return 0
    try:
        settings = settings_from(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    from sinch_sms_exporter.mitm import master  # imported late: --help stays fast

    try:
        master.serve(settings)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # mitmproxy's errorcheck: startup errors were already printed
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
