"""The service's local socket: reading commands answered by a process already warm.

A Python process that imports SQLAlchemy, numpy and whoosh and opens the index spends
most of a second before its first query; the service's web processes have all of it
loaded. So `arsip search`, `show` and `stats` first ask a running service over a Unix
socket in the data directory, the way `doveadm` asks Dovecot, and only open the archive
themselves when no service answers.

The socket is created with mode 0600: only the service's own user (and root) can
connect, the same people who can read its database file, so a connection is trusted as
an operator's command line. The audit trail names the connecting user by the kernel's
word (SO_PEERCRED), not by what the client says.

One request per connection: a JSON line `{"op", "params", "schema"}`, answered by a JSON
line `{"data"}`, `{"error", "status"}`, or `{"schema"}` when the client was built for
another schema (it then opens the archive itself and says what is wrong).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archiver.core import Core

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
SOCKET_NAME = "arsip.sock"
# AF_UNIX paths are limited to 107 bytes on Linux; a longer data directory gets no socket.
MAX_PATH = 107
ANSWER_TIMEOUT = 300.0  # a search of a huge archive may take long; a dead service cannot
REQUEST_TIMEOUT = 30.0


class NoService(Exception):
    """No service answers on the socket (none runs, or it was built for another schema)."""


def socket_path(data_dir: Path) -> Path:
    """Where the service listens for local commands."""
    return data_dir / SOCKET_NAME


def ask(data_dir: Path, op: str, params: dict[str, Any], schema: str) -> dict[str, Any]:
    """The service's answer to one reading command; raises `NoService` when there is no
    service to ask, and returns `{"error", "status"}` when the command failed there."""
    path = socket_path(data_dir)
    if len(os.fsencode(path)) > MAX_PATH or not path.exists():
        raise NoService(str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(ANSWER_TIMEOUT)
        try:
            client.connect(os.fspath(path))
        except OSError as exc:  # a stale socket of a stopped service, or not ours to use
            raise NoService(str(exc)) from exc
        request = {"op": op, "params": params, "schema": schema}
        client.sendall(json.dumps(request).encode() + b"\n")
        with client.makefile("rb") as stream:  # one answer, then the service hangs up
            try:
                answer = json.loads(stream.read() or b"{}")
            except ValueError as exc:  # cut short (a service stopping): read it ourselves
                raise NoService(f"unreadable answer: {exc}") from exc
    if "schema" in answer or not answer:
        raise NoService(f"the service runs schema {answer.get('schema')}, not {schema}")
    return answer


def bind(data_dir: Path) -> socket.socket | None:
    """The listening socket, owner-only, or None when another live service has it or the
    path is too long for a Unix socket (commands then open the archive themselves)."""
    path = socket_path(data_dir)
    if len(os.fsencode(path)) > MAX_PATH:
        log.warning("no local command socket: %s is longer than a Unix socket path may be", path)
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(os.fspath(path))
        except OSError:
            pass  # nobody listens: a stale file of a stopped service, or none
        else:
            log.warning("another service answers on %s; leaving it there", path)
            return None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(os.fspath(path))
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    listener.listen(64)
    return listener


class _Handler(socketserver.StreamRequestHandler):
    server: LocalServer
    timeout = REQUEST_TIMEOUT  # a client that connects and says nothing frees its thread

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST + 1)
        try:
            answer = self.server.answer(json.loads(line), _peer_user(self.connection))
        except (ValueError, TypeError, AttributeError):
            answer = {"error": "malformed request", "status": 2}
        self.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")


def _peer_user(connection: socket.socket) -> str:
    """The connecting process's user, as the kernel reports it."""
    import pwd

    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class LocalServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers reading commands on an already bound listening socket."""

    daemon_threads = True

    def __init__(self, core: Core, listener: socket.socket) -> None:
        super().__init__(os.fspath(socket_path(core.settings.data_dir)), _Handler, False)
        self.socket.close()
        # Every web process waits on the same listening socket and all are woken for each
        # connection; the ones that lose the race must not block in accept().
        listener.setblocking(False)
        self.socket = listener
        self.core = core

    def answer(self, request: dict[str, Any], user: str) -> dict[str, Any]:
        """One command's answer; errors the operator can fix come back as text."""
        from archiver.readops import OPERATIONS, ReadError
        from archiver.schema import head_revision

        if request.get("schema") != head_revision():
            return {"schema": head_revision()}
        operation = OPERATIONS.get(request.get("op", ""))
        if operation is None:
            return {"error": f"unknown command {request.get('op')!r}", "status": 2}
        try:
            return {"data": operation(self.core, dict(request.get("params") or {}), f"cli:{user}")}
        except ReadError as exc:
            return exc.as_answer()
        except Exception:
            log.exception("local command %s failed", request.get("op"))
            return {"error": "the service could not answer; see its log", "status": 1}

    def start(self) -> threading.Thread:
        """Serve in a daemon thread until `shutdown()`."""
        thread = threading.Thread(target=self.serve_forever, name="arsip-local", daemon=True)
        thread.start()
        return thread
