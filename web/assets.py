"""The stylesheet and script every page loads, from `web/static/`, never from a CDN.

A page names each file with `asset("arsip.css")`: its path with a hash of its contents,
so browsers may keep it for a year (a new release changes the hash, so nobody sees an
old stylesheet with new pages), and the Content-Security-Policy can allow our own files
and nothing inline.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Flask, Response, request, url_for

STATIC = Path(__file__).parent / "static"
YEAR = 365 * 24 * 3600


def init_app(app: Flask) -> None:
    """Give templates `asset()`, and let browsers keep the files it names."""
    app.jinja_env.globals["asset"] = asset
    app.after_request(_cache_assets)


def asset(name: str) -> str:
    """The URL of a static file, with its version."""
    return url_for("static", filename=name, v=version(name))


@cache
def version(name: str) -> str:
    """A hash of the file's contents: its version in the URL."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def _cache_assets(response: Response) -> Response:
    if request.endpoint == "static" and "v" in request.args and response.status_code == 200:
        response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    return response
