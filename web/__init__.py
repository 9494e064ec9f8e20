"""The Flask web UI: application factory and blueprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from archiver.service import Core


def create_app(core: Core) -> Flask:
    """Build the web app over the archiver's parts (tests pass their own `core`)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = core.settings.secret_key
    app.extensions["arsip_core"] = core

    from web import status

    app.register_blueprint(status.bp)
    return app
