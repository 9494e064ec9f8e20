"""A small browser for tests against a real `arsip serve`: it speaks HTTP from a chosen
loopback address (127.0.0.2 and so on play clients elsewhere), keeps the session cookie,
and sends forms with their CSRF token as a browser would."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from email.message import Message
from http.cookies import SimpleCookie
from urllib.parse import urlencode

# The site's own scripts: modules from /static/, named with their version (web/assets.py).
OUR_SCRIPT = re.compile(r'<script type="module" src="/static/[\w.-]+\.js\?v=[0-9a-f]+"></script>')


def foreign_scripts(page: str) -> list[str]:
    """The script tags of `page` other than the site's own modules: there must be none,
    whatever the mail, the form or the query put on the page."""
    return re.findall(r"<script\b[^>]*>", OUR_SCRIPT.sub("", page), flags=re.I)


@dataclass
class Answer:
    """One HTTP response, read whole."""

    status: int
    headers: Message
    body: str

    @property
    def html(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("text/html")


class Visitor:
    """One browser on `address`, talking to the web UI on 127.0.0.1:`port`."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.port = port
        self.address = address
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request (no redirects followed) and keep the cookies it sets."""
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=60, source_address=(self.address, 0)
        )
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.msg, response.read().decode(errors="replace"))
        finally:
            connection.close()
        for line in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return answer

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, headers=headers)

    def post_form(self, page: str, action: str, fields: dict[str, str]) -> Answer:
        """Open `page` and send its form to `action` with `fields` and the page's token."""
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.get(page).body)
        assert found, f"{page} has no CSRF field"
        return self.request("POST", action, form={"csrf_token": found.group(1), **fields})

    def log_in(self, email: str, password: str) -> int:
        """Log in through the login form; returns the status (302 when it worked)."""
        return self.post_form("/login", "/login", {"email": email, "password": password}).status

    def logged_in(self) -> bool:
        """Whether a page behind the login opens (rather than sending us to /login)."""
        return self.get("/account").status == 200
