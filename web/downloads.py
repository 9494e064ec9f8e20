"""A mail's attachments and raw source as downloads: never rendered as a page, never
sniffed into something a browser would run. For archived messages and for posts held for
moderators alike."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response

# Raw source and downloads are never rendered as pages.
DOWNLOAD_POLICY = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; sandbox"

_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/;]')


def content_disposition(filename: str | None, fallback: str = "attachment") -> str:
    """`attachment` with a filename every browser reads, non-ASCII names too (RFC 6266)."""
    name = _UNSAFE_FILENAME.sub("_", (filename or "").strip()) or fallback
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def download(data: bytes, filename: str | None) -> Response:
    """An attachment as a download that no browser renders or sniffs."""
    response = Response(data, content_type="application/octet-stream")
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    response.headers["Cache-Control"] = "private, no-cache"
    return response
