"""A bare SMTP sink: aiosmtpd with a handler that throws every message away.

The ingest benchmark sends the same mail here and to `arsip serve`, so the ratio between
the two says what Arsip's durability and bookkeeping cost on top of the SMTP protocol
itself. To keep that comparison honest the sink runs the same aiosmtpd server class with
the same options as the intake, on a plain asyncio server (no `Controller` thread), in a
process of its own so it never shares an interpreter lock with the client.

Run as `python tests/bench/bare_sink.py --port 0`: it prints `PORT <n>` once it listens
(port 0 lets the kernel choose a free one, so nothing races for it) and, when stopped with
SIGTERM or SIGINT, `RECEIVED <n>` with the number of messages it was given.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_SIZE = 25 * 1024 * 1024  # Arsip's default, so both refuse the same sizes


class DiscardHandler:
    """Accepts every recipient and message; counts messages so the run can be checked."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Acknowledge at once: the sink measures the protocol, not storage."""
        self.received += 1
        return "250 OK"


async def serve(host: str, port: int) -> int:
    """Listen until SIGTERM or SIGINT; return how many messages were received."""
    loop = asyncio.get_running_loop()
    handler = DiscardHandler()

    def factory() -> SMTP:
        return SMTP(
            handler,
            loop=loop,
            data_size_limit=MAX_MESSAGE_SIZE,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname="sink.localdomain",
            ident="bare sink",
        )

    server = await loop.create_server(factory, host=host, port=port)
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    await stopping.wait()
    server.close()
    await server.wait_closed()
    return handler.received


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    args = parser.parse_args()
    received = asyncio.run(serve(args.host, args.port))
    print(f"RECEIVED {received}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
