"""The component processes of `make demo` and `make stack`: start, wait until ready, stop.

Each component writes to its own log file, so the terminal stays readable and a component
that dies is reported with the end of its log instead of a bare exit status.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ComponentError(RuntimeError):
    """A component exited or never became ready; the message carries its log's tail."""


@dataclass
class Child:
    """A component process; its output goes to a log file, shown when it fails."""

    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise ComponentError(f"{self.name} exited with status {self.popen.returncode}:\n{self.tail()}")


@contextlib.contextmanager
def child(name: str, argv: list[str], workdir: Path) -> Iterator[Child]:
    """Run `argv` in `workdir` (log: `workdir/NAME.log`); terminate it on leaving.

    The child gets a process group of its own: a terminal's Ctrl-C (SIGINT to the whole
    foreground group) reaches only the parent, which ends the traffic, prints its last
    summary while the components still answer, and then stops them, in that order."""
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, process_group=0)
        proc = Child(name, popen, log)
    try:
        yield proc
    finally:
        stop(proc.popen)


#: Seconds a component gets after SIGTERM before a second one. The proxy drains on the first
#: (up to --shutdown-grace, waiting for a scrape that a stopped Prometheus will never make);
#: the second ends it at once.
STOP_AGAIN_AFTER = 2.0


def stop(
    popen: subprocess.Popen,
    again_after: float = STOP_AGAIN_AFTER,
    timeout: float = 10.0,
    sig: int = signal.SIGTERM,
) -> None:
    """`sig` (SIGTERM); `sig` again after `again_after` s; SIGKILL after `timeout` more.

    The one stop of every process the repo starts: the demo's and the stack's components, the
    tests' (tests/helpers/processes.py) and the benchmark's (bench/procs.py)."""
    for wait in (again_after, timeout):
        if popen.poll() is not None:
            return
        popen.send_signal(sig)
        try:
            popen.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass
    popen.kill()
    popen.wait()


def wait_ready(proc: Child, url: str | None = None, port: int | None = None, timeout: float = 30.0) -> None:
    """Until `url` answers 200 (or `port` accepts a connection), or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        with contextlib.suppress(OSError):
            if url:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            elif port:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
        time.sleep(0.1)
    raise ComponentError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.tail()}")
