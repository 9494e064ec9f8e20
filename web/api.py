"""The JSON API: the archive for programs, with a per-user token and the same access
rules as the pages (`Authorization: Bearer TOKEN`; `arsip users token EMAIL` prints one).

No token, or an unknown one: 401. A message, thread or list the token's user may not see:
404, the same answer as for one that does not exist. Tokens never open the CSRF-protected
forms: the API only reads.
"""

from __future__ import annotations

import email
from email.policy import default
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, abort, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from archiver.access import find_message, thread_messages
from archiver.accounts import Role, user_for_token, verified_addresses, viewer_for
from archiver.models import ContentCheck, Message
from archiver.report import content_checks, describe
from archiver.search.backend import Sort
from archiver.search.query import QuerySyntaxError
from archiver.search.service import MAX_LIMIT, search
from archiver.search.viewer import Viewer
from archiver.texts import message_text
from lists.admin import find_list
from lists.membership import has_role
from lists.models import MailingList, Member
from web.audit_hooks import audit_read
from web.deps import get_core, search_backend
from web.messages import shown_ids
from web.sanitize import sanitize_html

if TYPE_CHECKING:
    from archiver.core import Core

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    """Find the token's user; everything but the OpenAPI document needs one."""
    if request.endpoint == "api.openapi":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = None
    if scheme.lower() == "bearer" and token.strip():
        with get_core().sessions.begin() as session:
            user = user_for_token(session, token.strip())
            if user is not None:
                viewer = viewer_for(session, user)
                g.api_user = (user.id, user.role, viewer, verified_addresses(session, user))
                g.api_email = user.email
    if user is None:
        answer = jsonify(error="a valid API token is needed (Authorization: Bearer TOKEN)")
        answer.headers["WWW-Authenticate"] = 'Bearer realm="arsip"'
        return answer, 401
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _viewer() -> Viewer:
    return g.api_user[2]


@bp.get("/search")
def search_messages() -> ResponseReturnValue:
    """The same object as `arsip search --json`."""
    try:
        limit = min(max(int(request.args.get("limit", 20)), 1), MAX_LIMIT)
        offset = max(int(request.args.get("offset", 0)), 0)
        sort = Sort(request.args.get("sort", "relevance"))
    except ValueError:
        return jsonify(error="limit and offset are numbers; sort is relevance or date"), 400
    backend = search_backend()
    try:
        with get_core().sessions() as session:
            page = search(
                session,
                backend,
                request.args.get("q", ""),
                _viewer(),
                sort,
                limit,
                offset,
                store=get_core().store,
                exact_total=request.args.get("exact") == "1",
            )
    except QuerySyntaxError as exc:
        return jsonify(error=str(exc), position=exc.position), 400
    details = {"offset": offset, "results": page.total, "via": "api"}
    audit_read(_viewer(), "search", request.args.get("q", ""), details, actor=g.api_email)
    return jsonify(page.as_json())


@bp.get("/messages/<path:message_id>")
def message(message_id: str) -> ResponseReturnValue:
    """A message's metadata (as `arsip show --json`), its text, and its HTML sanitised."""
    viewer = _viewer()
    core = get_core()
    with core.sessions() as session:
        found = find_message(session, viewer, message_id)
        if found is None:
            abort(404)
        details = {"sha256": found.sha256, "via": "api"}
        audit_read(viewer, "message.view", found.message_id, details, actor=g.api_email)
        data = _described(found, viewer, session.get(ContentCheck, found.id))
        data["text"] = message_text(core.store, found.sha256, attachments=False).body
        data["html"] = _html(core, found.sha256)
    return jsonify(data)


@bp.get("/threads/<thread_id>")
def thread(thread_id: str) -> ResponseReturnValue:
    """The messages of a thread the token's user may see, oldest first."""
    viewer = _viewer()
    with get_core().sessions() as session:
        found = thread_messages(session, viewer, thread_id)
        if not found:
            abort(404)
        details = {**shown_ids(found), "via": "api"}
        audit_read(viewer, "thread.view", thread_id, details, actor=g.api_email)
        checks = content_checks(session, [m.id for m in found])
        described = [_described(m, viewer, checks.get(m.id)) for m in found]
        return jsonify(thread_id=thread_id, messages=described)


@bp.get("/lists")
def lists() -> ResponseReturnValue:
    """The lists whose archives the token's user may read."""
    viewer = _viewer()
    with get_core().sessions() as session:
        found = [
            {
                "address": m.address,
                "list_id": m.list_id,
                "display_name": m.display_name,
                "description": m.description,
                "archive": m.archive,
            }
            for m in session.scalars(
                select(MailingList).order_by(MailingList.domain, MailingList.name)
            )
            if viewer.sees_all or m.list_id in viewer.readable_lists
        ]
    return jsonify(lists=found)


@bp.get("/lists/<list_address>/members")
def members(list_address: str) -> ResponseReturnValue:
    """A list's members, for its owners and for administrators."""
    _, role, _, addresses = g.api_user
    with get_core().sessions() as session:
        mlist = find_list(session, list_address)
        allowed = mlist is not None and (
            role == Role.ADMIN
            or any(has_role(session, mlist, address, "owner") for address in addresses)
        )
        if not allowed or mlist is None:
            abort(404)
        rows = session.scalars(
            select(Member).where(Member.list_id == mlist.id).order_by(Member.address)
        )
        found = [
            {"address": m.address, "role": m.role, "delivery": m.delivery, "moderated": m.moderated}
            for m in rows
        ]
    return jsonify(list=mlist.address if mlist else list_address, members=found)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(OPENAPI)


@bp.errorhandler(404)
def _not_found(_: Exception) -> ResponseReturnValue:
    return jsonify(error="not found"), 404


def _described(message: Message, viewer: Viewer, check: ContentCheck | None) -> dict[str, Any]:
    """`describe`, showing what the message page shows this viewer: the envelope sender
    only to administrators and auditors, Bcc and envelope recipients to them in full and
    to anyone else only where it is one of their own addresses."""
    data = describe(message, check)
    if not viewer.sees_all:
        data["envelope_from"] = None
        data["bcc"] = [a for a in data["bcc"] if a["address"] in viewer.addresses]
        data["envelope_recipients"] = [
            a for a in data["envelope_recipients"] if a in viewer.addresses
        ]
    return data


def _html(core: Core, sha256: str) -> str | None:
    """The message's HTML body, sanitised as the message page shows it (no remote images)."""
    raw = core.store.get(sha256)
    try:
        parsed = email.message_from_bytes(raw, policy=default)
        part = parsed.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
        if part is None or part.get_content_type() != "text/html":
            return None
        return str(sanitize_html(part.get_content()).html)
    except (LookupError, ValueError, AttributeError):
        return None


_MESSAGE = {"type": "object", "description": "as `arsip show --json`, plus text and html"}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Arsip", "version": "1"},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "security": [{"token": []}],
    "paths": {
        "/api/v1/search": {
            "get": {
                "summary": "Search the mail the token's user may see",
                "parameters": [
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                    {
                        "name": "sort",
                        "in": "query",
                        "schema": {"enum": ["relevance", "date"]},
                    },
                    {
                        "name": "exact",
                        "in": "query",
                        "description": "1: count every match (past 10,000 the total and "
                        "facets are otherwise estimates)",
                        "schema": {"enum": ["1"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "{total, total_exact, results, facets}; total_exact "
                        "is false when total and facets are estimates"
                    },
                    "400": {"description": "a malformed query, with its position"},
                    "401": {"description": "no valid token"},
                },
            }
        },
        "/api/v1/messages/{message_id}": {
            "get": {
                "summary": "One message",
                "parameters": [
                    {
                        "name": "message_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "the message",
                        "content": {"application/json": {"schema": _MESSAGE}},
                    },
                    "404": {"description": "no such message, or not the token's to see"},
                },
            }
        },
        "/api/v1/threads/{thread_id}": {
            "get": {
                "summary": "A thread's messages, oldest first",
                "parameters": [
                    {
                        "name": "thread_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "{thread_id, messages}"},
                    "404": {"description": "not found"},
                },
            }
        },
        "/api/v1/lists": {
            "get": {
                "summary": "Lists whose archives the token's user may read",
                "responses": {"200": {"description": "{lists}"}},
            }
        },
        "/api/v1/lists/{list}/members": {
            "get": {
                "summary": "A list's members (owners and administrators)",
                "parameters": [
                    {"name": "list", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "{list, members}"},
                    "404": {"description": "not found"},
                },
            }
        },
    },
}
