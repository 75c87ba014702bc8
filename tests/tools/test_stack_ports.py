"""`make stack` checks its ports before starting anything: a port something listens on is
refused, a port whose only sockets are closing (TIME_WAIT, for a minute after `make demo` or
`make run`) is free, as it is for the components that bind it (SO_REUSEADDR)."""

from __future__ import annotations

import socket

import pytest

from tests.helpers.processes import wait_until
from tests.helpers.sockets import all_sockets
from tools.stack import StackError, check_ports_free


def _time_wait_port() -> int:
    """A loopback port with a connection in TIME_WAIT on it and nothing listening: the
    server side closes first, as the proxy and the simulator do when the demo stops. Their
    listeners set SO_REUSEADDR (asyncio's and Go's servers do), and so does this one: Linux
    lets a new bind share the port with TIME_WAIT sockets only when both sides set it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first: it is the one left in TIME_WAIT
        client.recv(1)  # the FIN arrived
        client.close()
    return port


def test_a_port_with_only_a_closing_connection_passes_the_check() -> None:
    port = _time_wait_port()
    wait_until(
        lambda: any(s.port == port and s.state == "TIME_WAIT" for s in all_sockets()),
        timeout=5,
        what=f"a TIME_WAIT socket on port {port}",
    )
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old check did: "already in use"
    check_ports_free({"prometheus-port": port})  # no StackError


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_port_something_listens_on_is_still_refused(host: str) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} is already in use: pick another with --listen-port"):
            check_ports_free({"listen-port": port})
