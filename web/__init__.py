"""The Flask web UI: application factory and blueprints.

Flask is imported when the app is built, not with this package: the command line loads
the package to find the plug-in's hooks (`web.plugin`), and `arsip lists members` should
not pay for Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask, Response

    from archiver.core import Core


def create_app(core: Core) -> Flask:
    """Build the web app over the archiver's parts (tests pass their own `core`)."""
    from flask import Flask
    from werkzeug.exceptions import HTTPException

    app = Flask(__name__)
    app.config["SECRET_KEY"] = core.settings.signing_key()
    # The session cookie holds the CSRF token: no scripts may read it, and other sites'
    # forms do not get it sent along.
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = core.settings.public_url.startswith("https://")

    from web import (
        account,
        admin,
        api,
        assets,
        audit,
        auth,
        cases,
        csrf,
        deps,
        errors,
        i18n,
        list_archives,
        lists,
        manage,
        member_page,
        messages,
        retention,
        search,
        status,
    )

    deps.init_app(app, core)
    i18n.init_app(app)
    assets.init_app(app)
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
    app.register_blueprint(cases.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(account.bp)
    app.register_error_handler(HTTPException, errors.error_page)
    app.after_request(security_headers)
    return app


# Pages load our own stylesheet and script (`web/static/`) and nothing else: no inline
# style or script, no plug-ins, no frames of other sites. Nobody may frame them
# (clickjacking), and a snippet of hostile mail that slipped past escaping still could
# not run, restyle the page or send anything.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(response: Response) -> Response:
    """Every response's protective headers, error pages included: set last (after the
    blueprints' own hooks), so a page with a stricter policy of its own (the message's
    HTML frame, downloads) keeps it."""
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
