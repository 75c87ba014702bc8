"""`sinch-sms-proxy`: friendly flags (and SINCH_PROXY_* environment variables) → mitmproxy
options, then the lean sidecar proxy. The flags, variables, defaults and checks are the rows
of `settings.TABLE`; this module adds what needs several of them or the machine (listeners
per upstream, free ports, a writable confdir).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinch_sms_exporter import __version__, settings
from sinch_sms_exporter.classify import routes
from sinch_sms_exporter.contract import labels
from sinch_sms_exporter.settings import (
    DEFAULT_UPSTREAM,
    ENV_PREFIX,
    Setting,
)

PROG = "sinch-sms-proxy"


class UsageError(Exception):
    """Bad flags or environment: reported in one line, exit status 2. Not a ValueError, so
    that argparse lets it through from a flag's type function with our message intact."""


@dataclass(frozen=True)
class Upstream:
    url: str  # scheme://host[:port], no path
    host: str
    port: int  # the upstream's port
    listen_port: int  # where the proxy listens for it
    region: str


def _reader(setting: Setting, where: str) -> Callable[[str], Any]:
    """The setting's parse, its failure a UsageError naming the flag or variable."""

    def read(text: str) -> Any:
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise UsageError(settings.message(where, text, str(exc))) from None

    read.__name__ = setting.dest  # argparse names a type function in some messages
    return read


class _Repeat(argparse.Action):
    """`append`, except that the first flag replaces the default (a list from the variable)
    instead of adding to it: flags win over variables."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, [*items, values])


def wrap_help(text: str, width: int) -> list[str]:
    """Wraps at spaces, never inside a word: argparse's textwrap breaks a long default such
    as the bucket list inside a number (`0.02 5`). A word wider than the column goes on a
    line of its own; only a comma-separated list of plain values is split, after a comma."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = ""
        if len(word) > width and _PLAIN_LIST.fullmatch(word):
            for piece in re.findall(r"[^,]*,|[^,]+", word):
                if line and len(line) + len(piece) > width:
                    lines.append(line)
                    line = ""
                line += piece
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


_PLAIN_LIST = re.compile(r"[\w.:/+-]+(?:,[\w.:/+-]+)+[\];]?")


class _HelpFormatter(argparse.HelpFormatter):
    def _split_lines(self, text: str, width: int) -> list[str]:
        return wrap_help(text, width)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block drowns the message), and
    every setting of the table is a flag with a SINCH_PROXY_<FLAG> variable, both checked by
    the setting's own check."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formatter_class=_HelpFormatter, **kwargs)
        #: (action, variable name) of every option settable from the environment.
        self.variables: list[tuple[argparse.Action, str]] = []
        self._settings: dict[str, Setting] = {}

    def error(self, message: str):  # type: ignore[override,unused-ignore]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_setting(self, setting: Setting) -> None:
        """The setting's flag, with its default and variable in the help text."""
        notes = [f"env {setting.variable}"]
        if setting.default_text is not None:
            notes.append(f"default: {setting.default_text}")
        help_text = f"{setting.help} [{'; '.join(notes)}]".replace("%", "%%")
        kwargs: dict[str, Any] = {"help": help_text, "dest": setting.dest}
        if setting.kind is bool:
            kwargs.update(action="store_true", default=setting.default)
        else:
            kwargs.update(type=_reader(setting, setting.flag_name), default=setting.default, metavar=setting.metavar)
            if setting.repeated:
                kwargs.update(action=_Repeat, default=list(setting.default))
        action = self.add_argument(setting.flag_name, **kwargs)
        assert setting.variable
        self.variables.append((action, setting.variable))
        self._settings[setting.dest] = setting

    def apply_environment(self, environ: Mapping[str, str]) -> None:
        """Set variables become defaults (so flags win), read by the same checks as the
        flags; a bad value is a UsageError naming the variable. Lists are comma-separated."""
        for action, variable in self.variables:
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            setting = self._settings[action.dest]
            read = _reader(setting, variable)
            if setting.repeated:
                value: Any = [read(item.strip()) for item in raw.split(",") if item.strip()]
            elif setting.kind is bool:
                try:
                    value = settings.boolean(raw)
                except ValueError as exc:
                    raise UsageError(settings.message(variable, raw, str(exc))) from None
            else:
                value = read(raw)
            self.set_defaults(**{action.dest: value})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per SINCH_PROXY_* variable no setting reads (a misspelt one would
    otherwise be ignored silently), with the closest known name when one is close."""
    warnings = []
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in settings.VARIABLES):
        close = settings.closest(name, settings.VARIABLES, ENV_PREFIX)
        hint = f" (did you mean {close}?)" if close else ""
        warnings.append(f"unknown variable {name} is ignored{hint}")
    return warnings


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="A sidecar proxy for the Sinch SMS REST API that counts every answer by HTTP "
        "status and error code and serves them as Prometheus metrics. Point your service's Sinch "
        "base URL at http://LISTEN-HOST:LISTEN-PORT. Every flag can also be set by the "
        f"environment variable {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}METRICS_PORT=9000; lists "
        "comma-separated); flags win.",
    )
    for setting in settings.FLAGS:
        parser.add_setting(setting)
    parser.add_argument(
        "--print-addon-path",
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
        try:
            item = settings.parse_upstream(spec)
        except ValueError as exc:
            raise UsageError(settings.message(source, spec, str(exc))) from None
        listen_port = next_port if item.listen_port is None else item.listen_port
        next_port = listen_port + 1
        region = regions[i] if regions else (routes.region_of_host(item.host) or labels.OTHER)
        upstreams.append(Upstream(item.url, item.host, item.port, listen_port, region))
    ports = [u.listen_port for u in upstreams]
    if len(set(ports)) != len(ports):
        raise UsageError(f"two upstreams share a listen port ({', '.join(map(str, ports))})")
    return upstreams


def callback_listeners(receivers: Sequence[str], listen_host: str) -> list[settings.CallbackListener]:
    """One callback listener per --callback-upstream (each already checked): on its @PORT, or
    on the next port from 8090, at --callback-listen-host."""
    listeners = []
    next_port = settings.DEFAULT_CALLBACK_PORT
    for spec in receivers:
        receiver = settings.parse_callback_upstream(spec)
        port = next_port if receiver.listen_port is None else receiver.listen_port
        next_port = port + 1
        host = f"[{listen_host}]" if ":" in listen_host else listen_host
        listeners.append(settings.CallbackListener(receiver.url, f"{host}:{port}", port))
    try:
        return settings.distinct_listen_ports(listeners)
    except ValueError as exc:
        raise UsageError(f"--callback-upstream: {exc}") from None


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
    """The arguments (each already checked by its setting) as mitmproxy options: the flags
    of the table with an `option` as they are, the rest derived here; plus the checks that
    need more than one value (regions per upstream) or the machine (ports, confdir)."""
    upstreams = parse_upstreams(args.upstream or [DEFAULT_UPSTREAM], args.region, args.listen_port)
    _check_confdir(Path(args.confdir).expanduser())

    options: dict[str, Any] = {s.option: getattr(args, s.dest) for s in settings.FLAGS if s.option}
    options["connection_strategy"] = "lazy"  # so a refused upstream gets the client a 502
    if args.upstream_ca:
        options["ssl_verify_upstream_trusted_ca"] = str(Path(args.upstream_ca).expanduser())
    if args.mode == "forward":
        options["mode"] = [f"regular@{args.listen_port}"]
        # Everything else is tunnelled, not decrypted.
        options["allow_hosts"] = [routes.allow_hosts_pattern(args.forward_hosts)]
        listeners = [args.listen_port]
    else:
        options["mode"] = [f"reverse:{u.url}@{u.listen_port}" for u in upstreams]
        options["sinch_regions"] = [f"{u.host}:{u.port}={u.region}" for u in upstreams]
        listeners = [u.listen_port for u in upstreams]
    callbacks = callback_listeners(args.callback_upstream, args.callback_listen_host)
    options["sinch_callback_upstreams"] = [f"{c.url}@{c.listen}" for c in callbacks]
    options["mode"] += [c.mode for c in callbacks]
    clash = set(listeners) & {c.port for c in callbacks}
    if clash:
        raise UsageError(f"a callback listener and a proxy listener share port {min(clash)}")
    for port in listeners:
        _check_port(args.listen_host, port, "proxy")
    for callback in callbacks:
        _check_port(args.callback_listen_host, callback.port, "callback")
    if args.metrics_port:
        _check_port(args.metrics_host, args.metrics_port, "metrics")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    for warning in unknown_variables(os.environ):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    parser = build_parser()
    try:
        parser.apply_environment(os.environ)
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse already printed its one-line error (or --help)
        return int(exc.code or 0)
    if args.print_addon_path:
        print(Path(__file__).with_name("mitmproxy_script.py"))
        return 0
    try:
        options = settings_from(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1

    from sinch_sms_exporter.mitm import master  # imported late: --help stays fast

    try:
        master.serve(options)
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
