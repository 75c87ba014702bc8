"""Real processes on loopback: start them, wait for their ports, stop them; waiting by condition."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.paths import PROXY, REPO, SIMULATOR
from tools import processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Process:
    """A started process whose stdout+stderr go to a log file (read with .log())."""

    popen: subprocess.Popen
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0, again_after: float = 3.0) -> int:
        """`sig`; if still running after `again_after` s, `sig` again (a draining proxy waits
        up to its --shutdown-grace for a scrape, a second signal ends it); after `timeout`, kill."""
        processes.stop(self.popen, again_after=again_after, timeout=timeout, sig=sig)
        return self.popen.returncode


def start(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Process:
    log = open(log_path, "wb")  # noqa: SIM115 - closed when the process object goes
    popen = subprocess.Popen(
        list(argv), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO
    )
    return Process(popen, log_path)


def start_simulator(tmp: Path, *args: str, port: int | None = None) -> Process:
    port = port or free_port()
    proc = start([SIMULATOR, "--port", str(port), *args], tmp / f"simulator-{port}.log")
    wait_for_port(port, proc=proc.popen)
    proc.ports["http"] = port
    return proc


def start_proxy(
    tmp: Path,
    upstream: str,
    *args: str,
    region: str | None = "us",
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
) -> Process:
    """Start sinch-sms-proxy in front of `upstream`; wait until both its ports answer.

    `ports` (listen, metrics) restarts a proxy where an earlier one listened; default: free ports."""
    listen, metrics = ports or (free_port(), free_port())
    argv = [PROXY, "--upstream", upstream, "--listen-port", str(listen), "--metrics-port", str(metrics),
            "--metrics-host", "127.0.0.1", "--confdir", str(tmp / "mitmproxy"), *args]  # fmt: skip
    if region:
        argv += ["--region", region]
    proc = start(argv, tmp / f"proxy-{listen}.log", env)
    wait_for_port(listen, proc=proc.popen)
    wait_for_port(metrics, proc=proc.popen)
    proc.ports.update(listen=listen, metrics=metrics)
    return proc


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


def run_in_threads(target: Callable[..., object], args_list: Sequence[tuple]) -> None:
    """`target(*args)` for every args, each on a thread of its own, all at once; returns when
    all have ended (concurrent clients: what target records is the caller's to check)."""
    threads = [threading.Thread(target=target, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until(check, timeout: float = 30.0, interval: float = 0.25, what: str = "condition"):
    """Call `check()` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met after {timeout} s")
        time.sleep(interval)
