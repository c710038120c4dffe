"""Free loopback ports for servers that the tests start in other processes.

A port picked here is free when picked, not reserved: a server started later binds it
itself. Ports picked together are distinct: each socket stays bound until the last one
is picked, so the kernel cannot hand the same ephemeral port out twice in one call.
"""

from __future__ import annotations

import contextlib
import socket

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports, each free on 127.0.0.1 when picked."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """One port, free on 127.0.0.1 when picked."""
    return free_ports(1)[0]
