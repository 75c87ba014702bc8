"""The simulator stops at once and quietly on SIGINT or SIGTERM, with requests in flight:
`make demo` and `make stack` stop it so, and its log is what a user reads afterwards."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.helpers.paths import PLAN
from tests.helpers.processes import start_simulator

pytestmark = pytest.mark.e2e


def _send(port: int, answer: str | None) -> socket.socket:
    """One request (None: connect and say nothing), its connection left open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if answer is not None:
        head = f"POST {PLAN}/batches HTTP/1.1\r\nHost: x\r\nX-Sinch-Sim: {answer}\r\nContent-Length: 0\r\n\r\n"
        sock.sendall(head.encode())
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_simulator_stops_at_once_without_tracebacks_with_requests_in_flight(tmp_path, sig: int) -> None:
    sim = start_simulator(tmp_path, "--scenario", "demo")
    port = sim.ports["http"]
    held = [_send(port, "hang"), _send(port, "slow:30"), _send(port, None)]
    idle = _send(port, "ok")  # answered, then an idle keep-alive connection
    try:
        assert idle.recv(65536).startswith(b"HTTP/1.1 201")  # POST /batches
        time.sleep(0.3)  # the hanging and the slow answers are under way
        started = time.monotonic()
        sim.popen.send_signal(sig)
        code = sim.popen.wait(10)
        elapsed = time.monotonic() - started
        # the open connections were closed (FIN or RST), not left to the client's timeout
        for sock in [*held, idle]:
            assert _closed(sock)
    finally:
        for sock in [*held, idle]:
            sock.close()
        sim.stop()
    log = sim.log()
    assert code == 0, log
    assert elapsed < 3, elapsed
    assert "Traceback" not in log and "CancelledError" not in log and "Exception" not in log, log
