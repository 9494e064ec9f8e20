"""The TSA's URL as it may be shown. `ARSIP_TSA_URL` may carry a login
(`https://user:password@tsa.example/`): pages, logs, `arsip stats` and the stored tokens
get the URL without it. Apart from `tsa`, so that `arsip stats` loads no cryptography."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def shown_url(url: str) -> str:
    """`url` without its login."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
