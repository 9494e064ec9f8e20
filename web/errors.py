"""Error pages in the site's layout and the reader's language.

Werkzeug names each HTTP error and explains it in English. For the errors people meet,
the page says the same in the reader's language, by status code; a view that aborts with
a reason of its own (`abort(404, description=...)`) has already said it in that language.
"""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException

# Status code -> (name, explanation): werkzeug's words, to be translated.
ERRORS = {
    400: (
        lazy_gettext("Bad Request"),
        lazy_gettext(
            "The browser (or proxy) sent a request that this server could not understand."
        ),
    ),
    403: (
        lazy_gettext("Forbidden"),
        lazy_gettext(
            "You don't have the permission to access the requested resource. It is either "
            "read-protected or not readable by the server."
        ),
    ),
    404: (
        lazy_gettext("Not Found"),
        lazy_gettext(
            "The requested URL was not found on the server. If you entered the URL manually "
            "please check your spelling and try again."
        ),
    ),
    405: (
        lazy_gettext("Method Not Allowed"),
        lazy_gettext("The method is not allowed for the requested URL."),
    ),
    413: (
        lazy_gettext("Request Entity Too Large"),
        lazy_gettext("The data value transmitted exceeds the capacity limit."),
    ),
    429: (
        lazy_gettext("Too Many Requests"),
        lazy_gettext("This user has exceeded an allotted request count. Try again later."),
    ),
    500: (
        lazy_gettext("Internal Server Error"),
        lazy_gettext(
            "The server encountered an internal error and was unable to complete your "
            "request. Either the server is overloaded or there is an error in the application."
        ),
    ),
    503: (
        lazy_gettext("Service Unavailable"),
        lazy_gettext(
            "The server is temporarily unable to service your request due to maintenance "
            "downtime or capacity problems. Please try again later."
        ),
    ),
}
ERROR = lazy_gettext("Error")
SOMETHING_WRONG = lazy_gettext("Something went wrong.")


def error_page(error: HTTPException) -> ResponseReturnValue:
    """Errors as a short page in the site's layout, never a traceback."""
    known = ERRORS.get(error.code or 500)
    title = str(known[0]) if known else error.name or str(ERROR)
    text = error.description or str(SOMETHING_WRONG)
    if known and error.description == type(error).description:  # werkzeug's own words
        text = str(known[1])
    # Keep headers such as Allow (405) or Retry-After (503); the page is ours.
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return render_template("message.html", title=title, text=text), error.code or 500, headers
