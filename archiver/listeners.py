"""Listening TCP sockets, bound by the service before it starts its children.

The service binds every port itself, before any child exists: a busy port then fails
start-up at once and leaves nothing running, and the children (forked from the service)
are handed the sockets they serve instead of binding their own.
"""

from __future__ import annotations

import socket

BACKLOG = 1024  # a burst of new sessions waits in the kernel, not refused


def listen(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address `host` resolves to (a name such as `localhost`
    may be both 127.0.0.1 and ::1), with the options asyncio's own servers use: the
    address reusable at once after a restart, and IPv6 sockets for IPv6 only, so that
    the IPv4 one of the same name does not collide with them."""
    addresses = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    bound: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound
