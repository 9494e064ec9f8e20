"""The web UI as a WSGI application for a separate server (gunicorn, uWSGI).

`arsip serve` serves the UI itself with waitress; larger sites run it under gunicorn
(`gunicorn -w 4 'web.wsgi:app'`) beside `arsip serve`, which keeps the intake and the
worker. Settings come from `arsip.toml` and `ARSIP_*` as for every other command.

The core is built as `arsip serve` builds it for its own web processes: with the
plug-ins' extensions (the list engine) plugged in but never started, so list pages
behave the same under either server.
Nothing here migrates the schema: an `arsip serve` or `arsip db upgrade` does that.
"""

from __future__ import annotations

from archiver import plugins
from archiver.config import load_settings
from archiver.core import build_core
from archiver.logs import configure_logging
from web import create_app

settings = load_settings()
configure_logging(settings)
core = build_core(settings)
core.extend(plugins.extensions())  # as `arsip serve` plugs them into `Service`
app = create_app(core)
