"""Asking a Time-Stamp Authority (RFC 3161) for a token, and checking a token offline.

`rfc3161-client` builds the request (sha256 imprint, a nonce, and `certReq` so the TSA
puts its certificate in the token: checking it later needs nothing but the CA bundle),
parses the answer and verifies the CMS signature up to the bundle's certificates; this
module adds the HTTP round trip (RFC 3161 section 3.4: a POST of the DER request), short
timeouts, and reasons in words. A TSA URL may carry a login (`https://user:pw@tsa/`):
it is sent as HTTP basic authentication and never shown (`tsa_url.shown_url`).

The bundle (`ARSIP_TSA_CA`) holds the TSA's root and any intermediate certificates, in
PEM. The library reads the token's certificates as strict DER, whose SET OF must be
sorted: a TSA that sends its chain unsorted gets "cannot read the TSA's answer", and
the remedy is to put the chain in the bundle and let the TSA send its own certificate.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from archiver.timestamps.tsa_url import shown_url

if TYPE_CHECKING:
    from archiver.config import Settings

log = logging.getLogger(__name__)

MAX_ANSWER = 1024 * 1024  # bytes: a token with a long chain is a few KiB
HASHES = {  # the imprint algorithms a token may use, by OID
    "2.16.840.1.101.3.4.2.1": hashlib.sha256,
    "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}


class TimestampError(Exception):
    """No token could be had, or a token does not hold; the message says why in a line."""


class UnreadableToken(TimestampError):
    """The bytes are not a granted RFC 3161 time-stamp response."""


class ImprintMismatch(TimestampError):
    """The token is for other data: what it covers changed after it was stamped."""


class UntrustedToken(TimestampError):
    """The token's signature does not lead to a certificate of the CA bundle."""


@dataclass(frozen=True)
class Token:
    """A token as the TSA sent it (DER TimeStampResp) and the time it vouches for."""

    der: bytes
    gen_time: datetime


def load_ca(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; `TimestampError` naming the file if it has none."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise TimestampError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError:
        raise TimestampError(f"{path}: holds no PEM certificate") from None


def request_token(
    url: str, data: bytes, timeout: float, ca: Sequence[x509.Certificate] | None = None
) -> Token:
    """Ask the TSA at `url` to stamp the sha256 of `data`; the token it answers with.

    The answer must be granted, carry our nonce and our imprint, and, when `ca` is
    given, verify up to it: a token that could not be checked later is no use stored.
    Raises `TimestampError` (the TSA cannot be reached, refuses, or answers nonsense).
    """
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .cert_request(cert_request=True)
        .build()
    )
    answer = _post(url, request.as_bytes(), timeout)
    response = _parse(answer, "the TSA's answer")
    if response.tst_info.nonce != request.nonce:
        raise TimestampError("the TSA's answer is for another request (its nonce differs)")
    if response.tst_info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampError("the TSA stamped other data than it was asked to")
    if ca is not None:
        try:
            _verify(response, hashlib.sha256(data).digest(), ca)
        except UntrustedToken as exc:
            raise TimestampError(f"its token does not verify against ARSIP_TSA_CA: {exc}") from None
    return Token(answer, response.tst_info.gen_time)


def check_token(
    token: bytes,
    ca: Sequence[x509.Certificate],
    *,
    data: bytes | None = None,
    digest: bytes | None = None,
) -> datetime:
    """Check offline that `token` (a DER TimeStampResp) stamps `data` (or its `digest`,
    in the token's hash algorithm) and is signed by a TSA whose certificate chains to
    `ca`, valid at the token's time; returns that time.

    Raises `UnreadableToken`, `ImprintMismatch` (the data changed since it was stamped)
    or `UntrustedToken` (not signed under `ca`, or the signature is broken).
    """
    response = _parse(token, "the token")
    imprint = response.tst_info.message_imprint
    if digest is None:
        hasher = HASHES.get(imprint.hash_algorithm.dotted_string)
        if hasher is None:
            raise UnreadableToken(f"the token uses an unknown hash ({imprint.hash_algorithm})")
        digest = hasher(data or b"").digest()
    if imprint.message != digest:
        raise ImprintMismatch("the token is for other data (its imprint differs)")
    _verify(response, digest, ca)
    return response.tst_info.gen_time


def stamp(settings: Settings, data: bytes) -> bytes | None:
    """A token (DER TimeStampResp) on the sha256 of `data` from the configured TSA, or None
    when no TSA is configured (`ARSIP_TSA_URL`) or it failed (logged, without its login).

    For evidence made outside the ledger and the audit log, such as a production's
    manifest: the caller stores the token beside `data`, and checks it with `check_token`
    (or `openssl ts -verify -data FILE -in TOKEN -CAfile CA`). It blocks for at most
    `ARSIP_TSA_TIMEOUT` seconds: call it from a command or a job, never from intake.
    """
    if not settings.tsa_url:
        return None
    try:
        ca = load_ca(settings.tsa_ca) if settings.tsa_ca else None
        return request_token(settings.tsa_url, data, settings.tsa_timeout, ca).der
    except TimestampError as exc:
        log.warning("timestamps: %s failed: %s", shown_url(settings.tsa_url), exc)
        return None


def _post(url: str, query: bytes, timeout: float) -> bytes:
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/timestamp-query",
        "Accept": "application/timestamp-reply",
    }
    if parts.username is not None or parts.password is not None:
        login = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    request = urllib.request.Request(shown_url(url), data=query, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"the TSA answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise TimestampError(f"the TSA did not answer within {timeout:g} s") from None
        shown = getattr(reason, "strerror", None) or reason
        raise TimestampError(f"cannot reach the TSA: {shown}") from None
    except TimeoutError:
        raise TimestampError(f"the TSA did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise TimestampError(f"cannot reach the TSA: {exc.strerror or exc}") from None
    if len(body) > MAX_ANSWER:
        raise TimestampError(f"the TSA's answer is larger than {MAX_ANSWER} bytes")
    return body


def _parse(der: bytes, what: str) -> TimeStampResponse:
    try:
        response = decode_timestamp_response(der)
    except ValueError as exc:
        raise UnreadableToken(f"cannot read {what}: {exc}") from None
    if response.status != PKIStatus.GRANTED:
        texts = "; ".join(response.status_string) or "no reason given"
        raise UnreadableToken(f"{what} is a refusal (status {response.status}: {texts})")
    return response


def _verify(response: TimeStampResponse, digest: bytes, ca: Sequence[x509.Certificate]) -> None:
    builder = VerifierBuilder()
    for certificate in ca:
        builder = builder.add_root_certificate(certificate)
    try:
        builder.build().verify(response, digest)
    except (VerificationError, ValueError) as exc:
        raise UntrustedToken(f"not signed by a TSA the CA bundle trusts ({exc})") from None
