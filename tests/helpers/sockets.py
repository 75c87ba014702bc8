"""The sockets a process has open, read from Linux's /proc (what `ss -p` shows, without
parsing its output): which addresses a real proxy process listens on, TCP and UDP."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

#: /proc/net/tcp state codes (include/net/tcp_states.h) the tests look at.
TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "0A": "LISTEN"}


@dataclass(frozen=True)
class Socket:
    protocol: str  # "tcp" or "udp" (either family)
    host: str  # "127.0.0.1", "0.0.0.0", "::", "::1", …
    port: int
    state: str  # "LISTEN", "TIME_WAIT", … (TCP); "UNCONN" or "ESTABLISHED" (UDP)


def _address(text: str) -> tuple[str, int]:
    """'0100007F:1F90' → ('127.0.0.1', 8080): the kernel prints each 32-bit word of the
    address in host (little-endian) order."""
    hex_host, hex_port = text.split(":")
    raw = bytes.fromhex(hex_host)
    host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(host) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, host), int(hex_port, 16)


def _table(name: str) -> list[tuple[str, Socket]]:
    """(inode, Socket) of each line of /proc/net/{tcp,tcp6,udp,udp6}; sockets no process
    holds (TIME_WAIT) have inode 0."""
    protocol = name.rstrip("6")
    sockets: list[tuple[str, Socket]] = []
    path = Path("/proc/net") / name
    if not path.exists():  # no IPv6 in this kernel
        return sockets
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        host, port = _address(fields[1])
        state = fields[3]
        udp_label = "ESTABLISHED" if state == "01" else "UNCONN"
        label = TCP_STATES.get(state, state) if protocol == "tcp" else udp_label
        sockets.append((fields[9], Socket(protocol, host, port, label)))
    return sockets


def all_sockets() -> list[Socket]:
    """Every TCP and UDP socket of this network namespace, whoever owns it."""
    return [s for name in ("tcp", "tcp6", "udp", "udp6") for _, s in _table(name)]


def sockets_of(pid: int) -> list[Socket]:
    """The TCP and UDP sockets process `pid` holds open (its file descriptors)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    tables = {inode: s for name in ("tcp", "tcp6", "udp", "udp6") for inode, s in _table(name) if inode != "0"}
    return sorted((tables[i] for i in inodes if i in tables), key=lambda s: (s.protocol, s.port, s.host))
