"""Where spamd or clamd listens, as the settings name it.

Apart from the daemons' clients so that reading the settings, which every command does,
does not load asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


@dataclass(frozen=True)
class DaemonAddress:
    """Where a daemon listens: `host:port`, `[ipv6]:port`, or a Unix socket's path."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> DaemonAddress:
        text = text.strip()
        if text.startswith("/"):
            return cls(path=text)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} is neither host:port nor a socket path")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        if self.path:
            return self.path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a stream to the daemon."""
        import asyncio

        if self.path:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)
