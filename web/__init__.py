"""The Flask web UI: application factory and blueprints."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Flask, render_template
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from archiver.core import Core


def create_app(core: Core) -> Flask:
    """Build the web app over the archiver's parts (tests pass their own `core`)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = core.settings.secret_key
    # The session cookie holds the CSRF token: no scripts may read it, and other sites'
    # forms do not get it sent along.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = core.settings.public_url.startswith("https://")
    # A login lasts a working day at most, even in a browser that is never closed.
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=12)
    app.extensions["arsip_core"] = core

    from web import (
        account,
        admin,
        api,
        audit,
        auth,
        csrf,
        list_archives,
        lists,
        manage,
        member_page,
        messages,
        retention,
        search,
        status,
    )

    csrf.init_app(app)
    auth.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(status.bp)
    app.register_blueprint(lists.bp)
    app.register_blueprint(member_page.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(search.bp)
    app.register_blueprint(list_archives.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(manage.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(retention.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(account.bp)
    app.register_error_handler(HTTPException, _error_page)
    return app


def _error_page(error: HTTPException) -> ResponseReturnValue:
    """Errors as a short page in the site's layout, never a traceback."""
    title = error.name or "Error"
    text = error.description or "Something went wrong."
    # Keep headers such as Allow (405) or Retry-After (503); the page is ours.
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return render_template("message.html", title=title, text=text), error.code or 500, headers
