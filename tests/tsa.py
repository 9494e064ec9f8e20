"""A real Time-Stamp Authority on loopback for the tests: `openssl ts -reply` behind a
tiny HTTP handler, signing with a certificate from a throwaway CA the test makes.

The CA and the TSA's key are made with `openssl` in the test's own folder, so nothing on
the machine is trusted or changed; the server binds 127.0.0.1 only and is stopped (its
thread joined) when the test is done. `stop()` and `start()` take the TSA down and bring
it back on the same port, which is how a test plays an outage.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from tests.support import free_ports, missing

POLICY = "1.3.6.1.4.1.55555.1.1"  # an OID under a private arc; any will do for a test

REPLY_CONFIG = """\
[ tsa ]
default_tsa = test_tsa

[ test_tsa ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

TSA_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
"""


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (certificate and key) in `folder`, named `name`."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "3650", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_tsa_certificate(folder: Path, ca_cert: Path, ca_key: Path) -> None:
    """The TSA's key and certificate (`tsa.key`, `tsa.pem`), signed by the CA, with the
    critical timeStamping extended key usage RFC 3161 asks for."""
    key, request, extensions = folder / "tsa.key", folder / "tsa.csr", folder / "tsa.ext"
    extensions.write_text(TSA_EXTENSIONS)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", request, "-subj", "/CN=Arsip test TSA",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", folder / "tsa.pem", "-days", "3650", "-extfile", extensions,
    )  # fmt: skip


@dataclass
class Tsa:
    """A running (or stopped) test TSA: `url` to ask, `ca` the bundle that trusts it."""

    folder: Path
    port: int
    ca: Path
    requests: int = 0
    logins: list[str] = field(default_factory=list)  # Authorization headers received
    _server: HTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsa"

    def reply(self, query: bytes) -> bytes:
        """What `openssl ts -reply` answers to `query` (DER TimeStampResp)."""
        with tempfile.TemporaryDirectory(dir=self.folder) as scratch:
            asked, answer = Path(scratch) / "query.tsq", Path(scratch) / "reply.tsr"
            asked.write_bytes(query)
            _openssl(
                "ts", "-reply", "-config", self.folder / "tsa.cnf",
                "-queryfile", asked, "-out", answer,
            )  # fmt: skip
            return answer.read_bytes()

    def start(self) -> Tsa:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                tsa.requests += 1
                if self.headers.get("Authorization"):
                    tsa.logins.append(self.headers["Authorization"])
                try:
                    body = tsa.reply(query)
                except subprocess.CalledProcessError:
                    self.send_error(400, "openssl could not answer that query")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output stays readable

        self._server = HTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None


@contextmanager
def running_tsa(folder: Path, start: bool = True) -> Iterator[Tsa]:
    """A TSA with a CA of its own in `folder`, on a free loopback port (started unless
    `start` is false: an outage from the beginning)."""
    if shutil.which("openssl") is None:
        missing("openssl is not installed: `make test` installs it (tests/ensure-import-tools.sh)")
    ca_cert, ca_key = make_ca(folder, "Arsip test TSA root")
    make_tsa_certificate(folder, ca_cert, ca_key)
    (folder / "serial").write_text("01\n")
    (folder / "tsa.cnf").write_text(REPLY_CONFIG.format(folder=folder, policy=POLICY))
    tsa = Tsa(folder, free_ports(1)[0], ca_cert)
    if start:
        tsa.start()
    try:
        yield tsa
    finally:
        tsa.stop()
