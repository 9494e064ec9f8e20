"""A private Dovecot IMAP server on loopback for the import tests.

`make test` installs Debian's dovecot-imapd (tests/ensure-import-tools.sh); the machine's
own Dovecot, if any, is left alone. Each server has its own configuration, sockets, logs,
accounts (a passwd-file) and maildirs in a folder of its own, listens on free loopback
ports (IMAP, with STARTTLS when given a certificate, and IMAPS), runs in the foreground
as the test's child and is stopped by its PID.

Dovecot refuses to open mail as root, so as root the mail belongs to `nobody`; the folder
is made directly under the system's temporary directory, short enough for Dovecot's
socket paths and open to the processes it runs as other users.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.support import eventually, free_ports, missing


@dataclass
class ImapServer:
    """A running Dovecot: where it listens, and ways to put mail in."""

    port: int
    tls_port: int
    users: dict[str, str]
    log: Path
    cafile: Path | None = None

    def url(self, user: str, mailbox: str = "INBOX", host: str = "127.0.0.1") -> str:
        """The imap:// URL of `user`'s `mailbox` (without a password, as ever)."""
        return f"imap://{user}@{host}:{self.port}/{mailbox}"

    @contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        """An imaplib session logged in as `user`."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            client.login(user, self.users[user])
            yield client
        finally:
            client.logout()

    def append(
        self, user: str, mailbox: str, messages: list[bytes], received: datetime | None = None
    ) -> None:
        """Deliver `messages` into `user`'s `mailbox`, made first when it is missing; the
        server says it received them at `received` (INTERNALDATE), else now."""
        with self.client(user) as client:
            client.create(_quoted(mailbox))  # NO when it exists: that is fine
            for message in messages:
                status, answer = client.append(_quoted(mailbox), None, received, message)
                assert status == "OK", answer

    def recreate(self, user: str, mailbox: str) -> None:
        """Delete `mailbox` and make it again, empty: the server gives it a new
        UIDVALIDITY, as after a migration or a restore."""
        with self.client(user) as client:
            assert client.delete(_quoted(mailbox))[0] == "OK"
            assert client.create(_quoted(mailbox))[0] == "OK"

    def flags(self, user: str, mailbox: str) -> list[bytes]:
        """Each message's FLAGS response in `mailbox`, read without changing them."""
        with self.client(user) as client:
            client.select(_quoted(mailbox), readonly=True)
            status, answer = client.fetch("1:*", "(FLAGS)")
            assert status == "OK", answer
            return [item for item in answer if isinstance(item, bytes)]


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def running_dovecot(users: dict[str, str], certificate: tuple[Path, Path] | None = None):
    """Dovecot with these accounts (name: password) on free loopback ports; with a
    (certificate, key), STARTTLS on the IMAP port and TLS on the IMAPS port."""
    dovecot = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if dovecot is None:
        missing("dovecot is not installed (make test installs Debian's dovecot-imapd)")
    home = Path(tempfile.mkdtemp(prefix="dovecot-"))
    home.chmod(0o755)
    try:
        yield from _serve(dovecot, home, users, certificate)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _serve(
    dovecot: str, home: Path, users: dict[str, str], certificate: tuple[Path, Path] | None
) -> Iterator[ImapServer]:
    mail_user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    mail = home / "mail"
    mail.mkdir()
    os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
    (home / "users").write_text("".join(f"{name}:{{PLAIN}}{pw}\n" for name, pw in users.items()))
    port, tls_port = free_ports(2)
    config = home / "dovecot.conf"
    config.write_text(_config(home, mail_user, port, tls_port, certificate))
    log = home / "dovecot.log"
    with open(home / "dovecot.out", "ab") as output:
        process = subprocess.Popen(
            [dovecot, "-F", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    server = ImapServer(port, tls_port, users, log, certificate[0] if certificate else None)
    try:
        eventually(
            lambda: _answers(process, port),
            30,
            lambda: f"dovecot to answer: {_tail(home / 'dovecot.out')}{_tail(log)}",
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _config(
    home: Path,
    mail_user: pwd.struct_passwd,
    port: int,
    tls_port: int,
    certificate: tuple[Path, Path] | None,
) -> str:
    """The whole configuration: nothing is read from /etc/dovecot."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    internal = ("dovecot", "dovenull") if os.geteuid() == 0 else (me, me)
    tls = (
        f"ssl = yes\nssl_cert = <{certificate[0]}\nssl_key = <{certificate[1]}\n"
        if certificate
        else "ssl = no\n"
    )
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {home}/run
state_dir = {home}/state
log_path = {home}/dovecot.log
info_log_path = {home}/dovecot.log
{tls}disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal[0]}
default_login_user = {internal[1]}
first_valid_uid = {mail_user.pw_uid}
mail_location = maildir:{home}/mail/%u:LAYOUT=fs
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {home}/users
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={home}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port if certificate else 0}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def _answers(process: subprocess.Popen[bytes], port: int) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"dovecot exited with status {process.returncode}")
    try:
        imaplib.IMAP4("127.0.0.1", port, timeout=5).shutdown()
    except (OSError, imaplib.IMAP4.error):
        return False
    return True


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""
