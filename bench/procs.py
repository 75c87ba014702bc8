"""The processes under test: start them on free ports (optionally pinned to a CPU), read
their CPU time and resident memory from /proc, stop them.

CPU time is utime + stime of /proc/<pid>/stat (all threads of the process), so the CPU
cost of a run is the difference before and after it; RSS is VmRSS of /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools import processes

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            name = proc.args[0] if isinstance(proc.args, list) else proc.args
            raise RuntimeError(f"{name!s} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Target:
    """A process the load goes through (or to): its name, URL base, and the pid to measure."""

    name: str
    popen: subprocess.Popen
    port: int
    log_path: Path | None = None
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """SIGTERM; a second one after 2 s (the proxy drains on the first, waiting for a
        scrape of its last counts; the second ends it at once); SIGKILL after 10 s more."""
        processes.stop(self.popen, again_after=2.0, timeout=10.0)


def _pinned(argv: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def start_process(
    name: str, argv: list[str], port: int, log_path: Path, cpus: str | None, env: dict | None = None, **extra
) -> Target:
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed with the process
    # taskset execs the program: the pid is the program's own.
    environment = {**os.environ, **(env or {})}
    popen = subprocess.Popen(_pinned(argv, cpus), stdout=log, stderr=subprocess.STDOUT, env=environment)
    target = Target(name, popen, port, log_path, **extra)
    try:
        wait_for_port(port, popen)
        if target.metrics_port:
            wait_for_port(target.metrics_port, popen)
    except (RuntimeError, TimeoutError):
        target.stop()
        raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    return target


def mitmdump_argv(upstream: str, port: int, confdir: Path) -> list[str]:
    """Bare mitmdump as a plain-mitmproxy user runs a reverse proxy: the default addons, -q.

    confdir points at a temporary directory only so the benchmark does not touch ~/.mitmproxy.
    """
    return [str(BIN / "mitmdump"), "--mode", f"reverse:{upstream}@{port}", "-q", "--set", f"confdir={confdir}"]


def start_mitmdump(upstream: str, home: Path, cpus: str | None) -> Target:
    port = free_port()
    argv = mitmdump_argv(upstream, port, home / "mitmproxy")
    return start_process("mitmdump", argv, port, home / "mitmdump.log", cpus)


def sinch_proxy_argv(upstream: str, port: int, metrics_port: int, confdir: Path, *extra: str) -> list[str]:
    """sinch-sms-proxy with its defaults (every metric on, log level info)."""
    return [str(BIN / "sinch-sms-proxy"), "--upstream", f"{upstream}@{port}", "--region", "us",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port),
            "--confdir", str(confdir), *extra]  # fmt: skip


def start_sinch_proxy(
    upstream: str, home: Path, cpus: str | None, *extra: str, name: str = "sinch-sms-proxy", env: dict | None = None
) -> Target:
    port, metrics_port = free_port(), free_port()
    argv = sinch_proxy_argv(upstream, port, metrics_port, home / "mitmproxy", *extra)
    log_path = home / f"{name.replace(' ', '')}-{port}.log"
    return start_process(name, argv, port, log_path, cpus, env, metrics_port=metrics_port)
