"""The frame a message's HTML body is shown in, and the one script it may run: the one
that tells the message page how tall the mail is, so the frame fits it.

Why one script in the frame stays safe:

- The frame is sandboxed twice, by the page's `<iframe sandbox="allow-scripts">` and by
  this response's own `sandbox allow-scripts` policy (which holds when someone opens its
  address directly). Neither allows `allow-same-origin`, so the document has an opaque
  origin: it cannot read the archive's cookies, storage or pages, and the parent's DOM is
  out of its reach. No `allow-top-navigation`, `allow-popups` or `allow-forms` either.
- Its Content-Security-Policy allows exactly one script: the one below, by its SHA-256.
  The sanitised mail has no scripts (nh3 removes them), and if one slipped through, or
  an event-handler attribute or a `javascript:` link, the browser would refuse to run it
  (no `'unsafe-inline'`, no `'unsafe-hashes'`).
- `default-src 'none'` leaves no way to the network (no `connect-src`; images only from
  `data:`/`cid:` until the reader asks for remote ones), so the script has nothing to
  send anywhere but the one number it posts to the page that framed it (only our own
  pages may frame it: `frame-ancestors 'self'`).

Without scripts the frame keeps the stylesheet's fixed height and scrolls by itself.
"""

from __future__ import annotations

import base64
import hashlib

from flask import Response

from web.sanitize import html_document, sanitize_html

# Posts the height of the mail to the page around it whenever it changes (images arrive,
# the window narrows), and when that page asks (it may start listening after the first
# post). The height of the root element, not `scrollHeight`: that is never less than the
# frame's own height, so a frame could grow but never shrink back to a short mail. Room
# for a horizontal scroll bar is added when a wide table needs one.
FRAME_SCRIPT = (
    "if(parent!==window){const r=document.documentElement;"
    "const post=()=>parent.postMessage({arsipFrameHeight:Math.ceil("
    "r.getBoundingClientRect().height)+(r.scrollWidth>r.clientWidth?20:0)},'*');"
    "new ResizeObserver(post).observe(r);"
    "addEventListener('message',(e)=>{if(e.source===parent)post()})}"
)
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(FRAME_SCRIPT.encode()).digest()).decode()

# The cleaned HTML body: the one script above, no network, framed only by our own page,
# and sandboxed even when someone opens its address directly.
HTML_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; "
    f"script-src '{SCRIPT_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox allow-scripts"
)
HTML_POLICY_WITH_IMAGES = HTML_POLICY.replace("img-src data: cid:", "img-src data: https: http:")
# The iframe's own sandbox attribute: scripts (ours, by the policy) and nothing else.
FRAME_SANDBOX = "allow-scripts"
# A page that frames a mail's HTML body: the site's own policy, plus frames of our own.
FRAMING_PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def framed_document(fragment: str) -> str:
    """The whole document of the frame: the cleaned fragment and the height script."""
    page = html_document(fragment)
    end = page.rindex("</body>")
    return f"{page[:end]}<script>{FRAME_SCRIPT}</script>{page[end:]}"


def html_frame(source: str, images: bool = False) -> Response:
    """A mail's HTML body, cleaned, as the document of the sandboxed frame that shows it
    (remote images only when the reader asks for them)."""
    page = framed_document(sanitize_html(source, remote_images=images).html)
    response = Response(page, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = HTML_POLICY_WITH_IMAGES if images else HTML_POLICY
    response.headers["Cache-Control"] = "private, no-cache"
    return response
