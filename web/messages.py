"""Reading archived mail: one message with its headers, body and attachments, and a thread.

Every fetch goes through `archiver.access`, so the database only ever returns what the
viewer may see, and a message that is not theirs looks exactly like one that does not
exist (404). Whatever comes out of a message is treated as hostile: the HTML body is cleaned
and shown in a sandboxed iframe under its own strict policy (`web.html_frame`), attachments
are downloads whose previews are only pictures of the type their bytes prove
(`web.previews`, `web.pdf_preview`), and the raw source is plain text that no browser may
sniff into HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from sqlalchemy.orm import Session

from archiver.access import find_message, thread_messages
from archiver.archive import ENVELOPE_FROM, ENVELOPE_TO
from archiver.audit import capped
from archiver.contentcheck.verdict import CLAMD, SPAMD
from archiver.folders import folders_of
from archiver.models import Attachment, ContentCheck, Message
from archiver.parse import html_body
from archiver.parse.parts import Part, parts_by_hash
from archiver.report import verdict
from archiver.search.viewer import Viewer
from archiver.store import BlobMissingError
from archiver.texts import message_texts, text_of_raw
from web.audit_hooks import audit_read
from web.auth import current_viewer
from web.case_context import in_case
from web.deps import get_core
from web.downloads import DOWNLOAD_POLICY, download
from web.html_frame import FRAME_SANDBOX, FRAMING_PAGE_POLICY, html_frame
from web.navigation import requested_return, with_return
from web.pdf_preview import first_page_png
from web.previews import Preview, image_type, is_pdf, preview
from web.sanitize import sanitize_html
from web.thread_nav import (
    list_of,
    month_link,
    neighbours,
    thread_href,
    thread_tree,
    up_link,
)

bp = Blueprint("messages", __name__)


NOT_FOUND = lazy_gettext(
    "No message with this Message-ID is archived, or it is not yours to see. "
    "If it was sent to you, log in first."
)
NO_THREAD = lazy_gettext(
    "No thread with this id is archived, or none of its messages are yours to see."
)
NO_SUBJECT = lazy_gettext("(no subject)")
# The content checks' daemons as the message page names them.
CHECKERS = {SPAMD: "SpamAssassin (spamd)", CLAMD: "ClamAV (clamd)"}

# How long a reader's browser may keep an attachment's preview.
PREVIEW_SECONDS = 3600
# Quoted lines ("> ..." and "> > ..."), as mail clients write them.
_QUOTED = re.compile(r"^\s*>")
_MAX_INDENT = 12


def message_url(message_id: str, *rest: str) -> str:
    """The path of a message's page (or of one of its parts), with the id escaped; inside
    the request's case when it is in one."""
    path = "/messages/" + quote(message_id, safe="@!$&'()*+,;=:~/")
    return in_case("/".join([path, *rest]))


@bp.app_template_global()
def message_link(message_id: str, *rest: str) -> str:
    """`message_url` for templates."""
    return message_url(message_id, *rest)


@bp.after_request
def reading_headers(response: Response) -> Response:
    """Mail is hostile and private: the message page may frame its own HTML body (the app
    adds the headers every page gets), and no shared proxy may keep a copy."""
    response.headers.setdefault("Content-Security-Policy", FRAMING_PAGE_POLICY)
    response.headers.setdefault("Cache-Control", "private, no-cache")
    return response


def _visible_or_404(db: Session, viewer: Viewer, message_id: str) -> Message:
    message = find_message(db, viewer, message_id)
    if message is None:
        abort(404, description=str(NOT_FOUND))
    return message


def _raw(message: Message) -> bytes:
    try:
        return get_core().store.get(message.sha256)
    except BlobMissingError:
        abort(404, description=gettext("The raw source of this message is no longer stored."))


@dataclass(frozen=True)
class Address:
    """One address as a header shows it."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


def _role(message: Message, role: str) -> list[Address]:
    return [Address(a.name, a.address) for a in message.addresses if a.role == role]


def _own(addresses: list[Address], viewer: Viewer) -> list[Address]:
    """Blind and envelope recipients are private: everyone but auditors sees only themselves."""
    if viewer.sees_all:
        return addresses
    return [a for a in addresses if a.address in viewer.addresses]


@bp.get("/messages/<path:message_id>")
def show(message_id: str) -> ResponseReturnValue:
    """One message: its headers, its text, its HTML in a sandbox, its attachments with
    previews, and the way on: previous and next in the thread, and up to where the reader
    came from."""
    viewer = current_viewer()
    back = requested_return()
    with get_core().sessions() as db:
        message = _visible_or_404(db, viewer, message_id)
        raw = _raw(message)
        audit_read(viewer, "message.view", message.message_id, {"sha256": message.sha256})
        html = html_body(raw)
        body = text_of_raw(raw, attachments=False).body
        held_back = sanitize_html(html).remote_images if html is not None else 0
        envelope_from = _role(message, ENVELOPE_FROM) or (
            [Address("", message.envelope_from)] if message.envelope_from else []
        )
        place = neighbours(db, viewer, message)
        mlist = list_of(db, message.list_id)
        thread = thread_href(message.thread_id, back, message.message_id)
        month = month_link(mlist, message.date)
        return render_template(
            "message_view.html",
            title=message.subject or NO_SUBJECT,
            message=message,
            body=body,
            sender=_role(message, "from"),
            to=_role(message, "to"),
            cc=_role(message, "cc"),
            reply_to=_role(message, "reply_to"),
            bcc=_own(_role(message, "bcc"), viewer),
            envelope_to=_own(sorted(_role(message, ENVELOPE_TO), key=str), viewer),
            envelope_from=envelope_from if viewer.sees_all else [],
            list_address=mlist.address if mlist is not None else None,
            folders=folders_of(db, [message.id]).get(message.id, []),
            attachments=_cards(message, raw, _infected(db, message)),
            has_html=html is not None,
            frame_sandbox=FRAME_SANDBOX,
            remote_images=held_back,
            verdict=verdict(db.get(ContentCheck, message.id)),
            checkers=CHECKERS,
            place=place,
            previous=_neighbour(place.previous, back),
            next=_neighbour(place.next, back),
            thread=thread,
            up=up_link(back, thread, month, place.size),
            month=month,
        )


def _neighbour(message_id: str | None, back: str | None) -> str | None:
    return with_return(message_url(message_id), back) if message_id else None


@dataclass(frozen=True)
class Card:
    """An attachment as its card shows it."""

    attachment: Attachment
    preview: Preview | None


def _infected(db: Session, message: Message) -> bool:
    """Whether ClamAV found a virus in the message: its attachments get no previews, so
    nothing of it is decoded or rendered until someone downloads it on purpose."""
    check = db.get(ContentCheck, message.id)
    return check is not None and bool(check.virus)


def _cards(message: Message, raw: bytes, infected: bool) -> list[Card]:
    """The attachments with their previews (one walk over the message finds them all)."""
    attachments = sorted(message.attachments, key=lambda a: a.position)
    if not attachments or infected:
        return [Card(a, None) for a in attachments]
    parts = parts_by_hash(raw)
    return [Card(a, preview(a, parts.get(a.sha256))) for a in attachments]


@bp.get("/messages/<path:message_id>/html")
def html(message_id: str) -> ResponseReturnValue:
    """The cleaned HTML body, for the sandboxed iframe of the message page (see
    `web.html_frame` for the one script it carries and why that is safe)."""
    viewer = current_viewer()
    with get_core().sessions() as db:
        message = _visible_or_404(db, viewer, message_id)
        source = html_body(_raw(message))
    if source is None:
        abort(404, description=gettext("This message has no HTML body."))
    return html_frame(source, images=request.args.get("images") == "1")


@bp.get("/messages/<path:message_id>/raw")
def raw(message_id: str) -> ResponseReturnValue:
    """The message as it arrived, shown as plain text."""
    viewer = current_viewer()
    with get_core().sessions() as db:
        message = _visible_or_404(db, viewer, message_id)
        data = _raw(message)
    audit_read(viewer, "message.raw", message.message_id, {"sha256": message.sha256})
    response = Response(data.decode("utf-8", "replace"), content_type="text/plain; charset=utf-8")
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


@bp.get("/messages/<path:message_id>/eml")
def eml(message_id: str) -> ResponseReturnValue:
    """The message as it arrived, as a file a mail client opens."""
    viewer = current_viewer()
    with get_core().sessions() as db:
        message = _visible_or_404(db, viewer, message_id)
        data = _raw(message)
    audit_read(viewer, "message.download", message.message_id, {"sha256": message.sha256})
    response = Response(data, content_type="message/rfc822")
    response.headers["Content-Disposition"] = 'attachment; filename="message.eml"'
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


def _attachment(message_id: str, position: int, action: str) -> tuple[Attachment, Part, bool]:
    """An attachment of a message the viewer may see, its bytes, and whether the message
    carries a virus; 404 otherwise. The read is audited as `action` (for the viewers whose
    reads are)."""
    viewer = current_viewer()
    with get_core().sessions() as db:
        message = _visible_or_404(db, viewer, message_id)
        found = next((a for a in message.attachments if a.position == position), None)
        if found is None:
            abort(404, description=gettext("This message has no such attachment."))
        infected = _infected(db, message)
        part = parts_by_hash(_raw(message)).get(found.sha256)
    if part is None:
        abort(404, description=gettext("This attachment could not be found in the stored message."))
    found_in = {"position": position, "sha256": found.sha256, "message_sha256": message.sha256}
    audit_read(viewer, action, message.message_id, found_in)
    return found, part, infected


@bp.get("/messages/<path:message_id>/attachments/<int:position>")
def attachment(message_id: str, position: int) -> ResponseReturnValue:
    """One attachment, always as a download: a mail's HTML or SVG never runs on this site."""
    found, part, _ = _attachment(message_id, position, "attachment.download")
    return download(part.data, found.filename)


@bp.get("/messages/<path:message_id>/attachments/<int:position>/preview")
def attachment_preview(message_id: str, position: int) -> ResponseReturnValue:
    """An attachment's picture for its card: an image as the type its bytes prove (never
    what the mail claims, never SVG), or a PDF's first page rendered as a PNG. Anything
    else, a PDF that does not render, or anything of a message with a virus in it, is a
    plain "no preview"."""
    _, part, infected = _attachment(message_id, position, "attachment.preview")
    picture = None if infected else _picture(part.data)
    if picture is None:
        response = Response(gettext("No preview"), status=404, content_type="text/plain")
    else:
        response = Response(picture[0], content_type=picture[1])
        response.headers["Content-Disposition"] = "inline"
        # The same bytes every time (the message is stored once, unchanged): the reader's
        # own browser may keep them a while rather than render a PDF again.
        response.headers["Cache-Control"] = f"private, max-age={PREVIEW_SECONDS}"
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


def _picture(data: bytes) -> tuple[bytes, str] | None:
    """The preview of an attachment's bytes and its type: an image as it is, a PDF's first
    page as a PNG; None for anything else."""
    if kind := image_type(data):
        return data, kind
    if is_pdf(data) and (png := first_page_png(data)) is not None:
        return png, "image/png"
    return None


@dataclass(frozen=True)
class Segment:
    """A run of body lines: quoted (folded away on the page) or the writer's own."""

    quoted: bool
    text: str


def fold_quotes(body: str) -> list[Segment]:
    """Split a text body into runs of quoted and unquoted lines, in order."""
    segments: list[Segment] = []
    run: list[str] = []
    quoted = False
    for line in body.splitlines():
        is_quoted = bool(_QUOTED.match(line))
        if run and is_quoted != quoted:
            segments.append(Segment(quoted, "\n".join(run)))
            run = []
        quoted = is_quoted
        run.append(line)
    if run:
        segments.append(Segment(quoted, "\n".join(run)))
    return segments


def shown_ids(messages: list[Message]) -> dict[str, object]:
    """What a thread view records: how many messages it showed and their Message-IDs."""
    return {"messages": len(messages), "message_ids": capped([m.message_id for m in messages])}


@bp.get("/threads/<thread_id>")
def thread(thread_id: str) -> ResponseReturnValue:
    """A whole conversation as a tree of replies, quoted text folded away; the message the
    reader came from (`?message=`) marked, and up to the results or the list's month."""
    viewer = current_viewer()
    back = requested_return()
    with get_core().sessions() as db:
        messages = thread_messages(db, viewer, thread_id)
        if not messages:
            abort(404, description=str(NO_THREAD))
        audit_read(viewer, "thread.view", thread_id, shown_ids(messages))
        texts = message_texts(get_core().store, [m.sha256 for m in messages], attachments=False)
        wanted = request.args.get("message", "")
        current = next((m for m in messages if m.message_id == wanted), None)
        entries = [
            {
                "depth": depth,
                "indent": min(depth, _MAX_INDENT),
                "message": message,
                "href": with_return(message_url(message.message_id), back),
                "current": message is current,
                "sender": (
                    _role(message, "from") or [Address(message.from_name, message.from_address)]
                )[0],
                "segments": fold_quotes(texts[message.sha256].body),
            }
            for depth, message in thread_tree(messages)
        ]
        first = current or messages[0]
        month = month_link(list_of(db, first.list_id), first.date)
        return render_template(
            "thread.html",
            title=messages[0].subject or NO_SUBJECT,
            entries=entries,
            thread_id=thread_id,
            up=up_link(back, None, month, len(messages)),
            month=month,
            back=back,
        )
