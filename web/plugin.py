"""The web UI's hook into the core (found through the `arsip.plugins` entry point; see
`archiver.plugins`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archiver.core import Core


def web_app_factory() -> Callable[[Core], Any]:
    """`create_app`, for the service's web processes and for gunicorn."""
    from web import create_app

    return create_app
