"""Private Postfix instances for the MTA tests, configured from the README.

Each instance has its own configuration, queue and data directories under a temporary
folder and one SMTP listener on a loopback port; it is started and stopped with
`postfix -c DIR`, so the machine's own Postfix (if any) is never touched. The settings the
README gives an operator are read from its "Connecting your mail server" section, so the
tests configure exactly what the README says.
"""

from __future__ import annotations

import email
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from tests.support import ROOT

README = ROOT / "README.md"
# The port the README's examples give Arsip's LMTP listener.
README_LMTP = "127.0.0.1:2424"

# Every daemon a small instance needs, none of them chrooted (the instance's queue is not
# prepared as a chroot jail).
MASTER_CF = """\
{listen}  inet  n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

# What every test instance shares: loopback only, no DNS, nothing leaves the machine, and
# short retry times so a deferred message is tried again within the test.
COMMON_MAIN_CF = {
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": "127.0.0.1",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.0/8",
    "mydestination": "",
    "alias_maps": "",
    "alias_database": "",
    "local_recipient_maps": "",
    "smtp_dns_support_level": "disabled",
    "lmtp_host_lookup": "native",
    "smtp_host_lookup": "native",
    "default_transport": "error:mail for other domains is not delivered in tests",
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "smtp_connect_timeout": "5s",
    "lmtp_connect_timeout": "5s",
    "delay_warning_time": "0",
    "biff": "no",
    "smtputf8_enable": "no",
}


def available() -> str | None:
    """Why Postfix cannot run here, or None when it can."""
    missing = [tool for tool in ("postfix", "postconf", "postmap") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not installed (make test-mta installs Debian's postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root to start"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "there is no postfix user"
    return None


def readme_config(*sections: str) -> dict[str, list[str]]:
    """The README's configuration blocks in the named `### ` sections, by file name.

    A block starts with a comment naming its file (`# main.cf`, `# /etc/postfix/transport
    (why)`); blocks for the same file are joined in order.
    """
    text = README.read_text()
    blocks: dict[str, list[str]] = {}
    for title in sections:
        match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##)", text, re.M | re.S)
        if match is None:
            raise AssertionError(f"README has no section '### {title}'")
        for block in re.findall(r"^```\n(.*?)^```", match.group(1), re.M | re.S):
            first, *lines = block.splitlines()
            name = first.removeprefix("# ").split()[0].rstrip(":")
            blocks.setdefault(name, []).extend(line for line in lines if line.strip())
    return blocks


def parse_main_cf(lines: list[str]) -> dict[str, str]:
    """`name = value` lines as a dict."""
    settings = {}
    for line in lines:
        name, _, value = line.partition("=")
        settings[name.strip()] = value.strip()
    return settings


class Postfix:
    """One Postfix instance with its SMTP listener on 127.0.0.1:`port`.

    Its files live in a new folder under the system's temporary directory (the postfix user
    must reach them, which it cannot under pytest's private folders); `stop` removes it.
    """

    def __init__(
        self,
        name: str,
        port: int,
        main_cf: dict[str, str],
        maps: dict[str, list[str]],
    ) -> None:
        self.name = name
        self.port = port
        self.base = base = Path(tempfile.mkdtemp(prefix=f"arsip-postfix-{name}-"))
        base.chmod(0o755)
        self.config_dir = base / "etc"
        self.queue_dir = base / "queue"
        self.data_dir = base / "data"
        self.mail_dir = base / "mail"
        self.log_file = base / "maillog"
        self.main_cf = {
            **COMMON_MAIN_CF,
            "myhostname": f"{name}.test",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(base),
            "virtual_mailbox_base": str(self.mail_dir),
            **main_cf,
        }
        self.maps = maps
        self.started = False

    def etc(self, path: str) -> str:
        """`path` from the README, with /etc/postfix/ turned into this instance's directory."""
        return path.replace("/etc/postfix/", f"{self.config_dir}/")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    def start(self) -> Postfix:
        """Write the configuration, build the hash maps and start the instance."""
        for directory in (self.config_dir, self.queue_dir, self.data_dir, self.mail_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data_dir, "postfix")
        shutil.chown(self.mail_dir, "postfix", "postfix")
        settings = "".join(f"{k} = {self.etc(v)}\n" for k, v in self.main_cf.items())
        (self.config_dir / "main.cf").write_text(settings)
        (self.config_dir / "master.cf").write_text(
            MASTER_CF.format(listen=f"127.0.0.1:{self.port}")
        )
        for name, lines in self.maps.items():
            path = Path(self.etc(f"/etc/postfix/{name}"))
            path.write_text("".join(f"{line}\n" for line in lines))
            if f"hash:{path}" in settings:
                self._check(self._run("postmap", "-c", str(self.config_dir), f"hash:{path}"))
        self._check(self._run("postfix", "-c", str(self.config_dir), "check"))
        self._check(self._run("postfix", "-c", str(self.config_dir), "start"))
        self.started = True
        return self

    def _check(self, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise RuntimeError(
                f"Postfix instance {self.name} could not be set up: {done.args}: "
                f"{done.stderr.strip() or done.stdout.strip()}\n{self.log()}"
            )

    def stop(self) -> None:
        """Stop the instance started here (and only it), and remove its files."""
        if self.started:
            self._run("postfix", "-c", str(self.config_dir), "stop")
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-6000:] if self.log_file.exists() else ""

    def queue(self) -> str:
        """What the instance still has in its queue, as `postqueue -p` shows it."""
        return self._run("postqueue", "-c", str(self.config_dir), "-p").stdout

    def mailbox(self, address: str) -> Path:
        """The maildir of a virtual mailbox of this instance (`domain/local/`)."""
        local, domain = address.lower().split("@")
        return self.mail_dir / domain / local

    def messages(self, address: str) -> list[EmailMessage]:
        """The messages delivered to `address`'s maildir so far, oldest first."""
        new = self.mailbox(address) / "new"
        if not new.is_dir():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=default)  # type: ignore[misc]
            for path in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        ]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        """Wait until `address`'s maildir holds `count` messages; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(address)
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if len(found) < count:
            raise AssertionError(
                f"{address} got {len(found)} of {count} messages at {self.name}\n"
                f"queue:\n{self.queue()}\nlog:\n{self.log()}"
            )
        return found
