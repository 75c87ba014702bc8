"""Hand-made TCP servers for the tests that need an upstream or receiver misbehaving in ways no
real server would: one accept loop, each connection handled on a thread of its own."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def serve_connections(handle: Callable[[socket.socket], None]) -> socket.socket:
    """A loopback server on a free port that runs `handle(conn)` for every connection, until
    the returned server socket is closed (`.getsockname()[1]` is its port)."""
    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is done with it
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server
