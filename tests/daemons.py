"""Private SpamAssassin (`spamd`) and ClamAV (`clamd`) daemons on loopback for the tests.

`make test` installs Debian's `spamd` and `clamav-daemon` (tests/ensure-contentcheck.sh);
the machine's own daemons, if any, are left alone. There is no network here, so spamd
runs with `--local` (no DNS or network tests), and clamd gets a signature database of
one entry, built with `sigtool --md5` from the EICAR test file, instead of the real one.
Each daemon is started by the test session and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from archiver.contentcheck.daemons import DaemonAddress, clamd_ping, spamd_ping
from tests.support import free_ports

# The standard test strings: every SpamAssassin scores GTUBE at about 1000, and every
# virus scanner, given a signature for it, finds the EICAR file.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
START_TIMEOUT = 120  # seconds: spamd compiles its rules on a cold start


def infected_message(
    message_id: str, to: str = "bob@example.com", sender: str = "Mallory <mallory@example.net>"
) -> bytes:
    """A message carrying the EICAR test file as an attachment named `invoice.com`."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "The invoice you asked for"
    message["Date"] = "Mon, 02 Feb 2026 09:00:00 +0000"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content("Please open the attached file.")
    message.add_attachment(
        EICAR, maintype="application", subtype="octet-stream", filename="invoice.com"
    )
    return message.as_bytes()


def missing(*tools: str) -> str:
    """Why the daemons cannot run here ("" when they can)."""
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (make test installs spamd and clamav-daemon)"
    return ""


@contextmanager
def running_spamd(workdir: Path, children: int = 4) -> Iterator[DaemonAddress]:
    """spamd on a free loopback port, local tests only, as the `nobody` user, with at
    most `children` scanning processes."""
    reason = missing("spamd")
    if reason:
        pytest.skip(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)  # its children run as nobody
    port = free_ports(1)[0]
    command = [
        shutil.which("spamd") or "spamd",
        "--local",
        f"--listen=127.0.0.1:{port}",
        "--allowed-ips=127.0.0.1",
        "--username=nobody",
        f"--max-children={children}",
        f"--pidfile={workdir / 'spamd.pid'}",
        f"--syslog={workdir / 'spamd.log'}",
        "--nouser-config",
    ]
    address = DaemonAddress("127.0.0.1", port)
    with _daemon(command, workdir / "spamd.out", address, spamd_ping):
        yield address


@contextmanager
def running_clamd(workdir: Path) -> Iterator[DaemonAddress]:
    """clamd on a free loopback port with a database that knows only EICAR."""
    reason = missing("clamd", "sigtool")
    if reason:
        pytest.skip(reason)
    database = workdir / "db"
    database.mkdir(parents=True, exist_ok=True)
    sample = workdir / "eicar.com"
    sample.write_bytes(EICAR)
    signature = subprocess.run(
        ["sigtool", "--md5", str(sample)], capture_output=True, text=True, check=True
    ).stdout
    (database / "eicar.hdb").write_text(signature)
    port = free_ports(1)[0]
    config = workdir / "clamd.conf"
    config.write_text(
        f"DatabaseDirectory {database}\n"
        f"TCPSocket {port}\nTCPAddr 127.0.0.1\n"
        "Foreground yes\n"
        f"LogFile {workdir / 'clamd.log'}\n"
        f"PidFile {workdir / 'clamd.pid'}\n"
        + ("User root\n" if os.geteuid() == 0 else "")  # as root, clamd wants to be told
    )
    command = [shutil.which("clamd") or "clamd", f"--config-file={config}"]
    address = DaemonAddress("127.0.0.1", port)
    with _daemon(command, workdir / "clamd.out", address, clamd_ping):
        yield address


@contextmanager
def _daemon(command: list[str], output: Path, address: DaemonAddress, ping) -> Iterator[None]:
    """Run `command` until the block ends; wait until `ping` answers at `address`."""
    with open(output, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(ping, address):
            if process.poll() is not None and not _answers(ping, address):
                raise RuntimeError(f"{command[0]} exited: {output.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not answer: {output.read_text()[-2000:]}")
            time.sleep(0.2)
        yield
    finally:
        _stop(process, command, output.parent)


def _answers(ping, address: DaemonAddress) -> bool:
    try:
        return asyncio.run(asyncio.wait_for(ping(address), 2))
    except (OSError, TimeoutError, EOFError, RuntimeError):
        return False


def _stop(process: subprocess.Popen[bytes], command: list[str], workdir: Path) -> None:
    """Stop what we started, by PID: spamd forks into the background and writes its
    PID file, clamd stays in the foreground as `process`."""
    pids = {process.pid}
    for pidfile in workdir.glob("*.pid"):
        text = pidfile.read_text().strip()
        if text.isdigit() and Path(pidfile).stem == Path(command[0]).name:
            pids.add(int(text))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
