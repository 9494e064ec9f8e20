"""The web UI as a WSGI application for a separate server (gunicorn, uWSGI).

`arsip serve` serves the UI itself with waitress; larger sites run it under gunicorn
(`gunicorn -w 4 'web.wsgi:app'`) beside `arsip serve`, which keeps the intake and the
worker. Settings come from `arsip.toml` and `ARSIP_*` as for every other command.
"""

from __future__ import annotations

from archiver.config import load_settings
from archiver.service import build_core, configure_logging
from web import create_app

settings = load_settings()
configure_logging(settings)
app = create_app(build_core(settings))
