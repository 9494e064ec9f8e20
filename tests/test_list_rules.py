"""Posting rules as pure functions: each story is one post and the decision it gets."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from lists.models import Action, MailingList
from lists.pipeline.subject_prefix import prefixed
from lists.rules import Post, decide

LIST = "dev@lists.example.com"


def mailing_list(**settings: object) -> MailingList:
    defaults: dict[str, object] = {
        "name": "dev",
        "domain": "lists.example.com",
        "posting": "members",
        "nonmember_action": "hold",
        "max_message_kb": 1024,
        "max_recipients": 10,
        "emergency": False,
        "require_explicit_destination": True,
        "header_matches": [],
        "trust_header_from": False,
        "spam_hold_score": 5.0,
        "spam_discard_score": 15.0,
        "unchecked_posts": "hold",
    }
    return MailingList(**{**defaults, **settings})


def message(to: str = LIST, subject: str = "Plans", body: str = "Hello.\n", **headers: str):
    text = f"From: ann@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n"
    text += "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    text += f"\r\n{body}"
    parsed = email.message_from_bytes(text.encode(), policy=SMTP)
    assert isinstance(parsed, EmailMessage)
    return parsed


def post(
    mlist: MailingList | None = None,
    msg: EmailMessage | None = None,
    roles: frozenset[str] = frozenset({"member"}),
    size: int = 1000,
    moderated: bool = False,
    banned: bool = False,
    vouched: bool = True,
) -> Post:
    return Post(
        mlist=mlist or mailing_list(),
        message=msg or message(),
        size=size,
        sender="ann@example.org",
        roles=roles,
        moderated=moderated,
        banned=banned,
        vouched=vouched,
    )


@pytest.mark.parametrize(
    ("story", "the_post", "action", "rule"),
    [
        ("a member's post goes out", post(), Action.ACCEPT, ""),
        (
            "mail that went through the list before is dropped",
            post(msg=message(List_Id="dev <dev.lists.example.com>")),
            Action.DISCARD,
            "loop",
        ),
        (
            "emergency moderation holds everything",
            post(mlist=mailing_list(emergency=True)),
            Action.HOLD,
            "emergency",
        ),
        ("a banned sender is refused", post(banned=True), Action.REJECT, "banned-address"),
        (
            "a member's post nothing vouches for is held",
            post(vouched=False),
            Action.HOLD,
            "unverified-sender",
        ),
        (
            "on a list that believes the From header, it goes out",
            post(mlist=mailing_list(trust_header_from=True), vouched=False),
            Action.ACCEPT,
            "",
        ),
        (
            "on an open list, anyone posts anyway",
            post(mlist=mailing_list(posting="open"), vouched=False),
            Action.ACCEPT,
            "",
        ),
        ("a huge post is held", post(size=2 * 1024 * 1024), Action.HOLD, "max-size"),
        (
            "a post to many people is held",
            post(msg=message(to=", ".join([LIST] + [f"p{i}@example.com" for i in range(12)]))),
            Action.HOLD,
            "max-recipients",
        ),
        (
            "a command sent to the list is held",
            post(msg=message(subject="unsubscribe", body="unsubscribe\n")),
            Action.HOLD,
            "administrivia",
        ),
        ("a moderated member is held", post(moderated=True), Action.HOLD, "member-moderation"),
        (
            "on an announce list a member is held",
            post(mlist=mailing_list(posting="announce")),
            Action.HOLD,
            "member-moderation",
        ),
        (
            "on an announce list an owner posts",
            post(mlist=mailing_list(posting="announce"), roles=frozenset({"owner"})),
            Action.ACCEPT,
            "",
        ),
        ("a stranger is held", post(roles=frozenset()), Action.HOLD, "nonmember"),
        (
            "a stranger is rejected where the list says so",
            post(mlist=mailing_list(nonmember_action="reject"), roles=frozenset()),
            Action.REJECT,
            "nonmember",
        ),
        (
            "anyone posts to an open list",
            post(mlist=mailing_list(posting="open"), roles=frozenset()),
            Action.ACCEPT,
            "",
        ),
        (
            "a post with the list only in Bcc is held",
            post(msg=message(to="someone@example.com")),
            Action.HOLD,
            "implicit-destination",
        ),
        (
            "a header rule discards spam",
            post(
                mlist=mailing_list(
                    header_matches=[
                        {"header": "X-Spam-Flag", "pattern": "^yes", "action": "discard"}
                    ]
                ),
                msg=message(X_Spam_Flag="YES"),
            ),
            Action.DISCARD,
            "header-match",
        ),
        (
            "a broken header rule is skipped",
            post(mlist=mailing_list(header_matches=[{"header": "Subject", "pattern": "("}])),
            Action.ACCEPT,
            "",
        ),
    ],
)
def test_posting_rules(story: str, the_post: Post, action: Action, rule: str) -> None:
    decision = decide(the_post)
    assert (decision.action, decision.rule) == (action, rule), story


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Plans", "[dev] Plans"),
        ("[dev] Plans", "[dev] Plans"),
        ("Re: Plans", "Re: [dev] Plans"),
        ("Re: [dev] Plans", "Re: [dev] Plans"),
        ("[dev] Re: [dev] Plans", "Re: [dev] Plans"),
        ("RE: Re: Plans", "Re: [dev] Plans"),
        ("Fwd: Plans", "[dev] Fwd: Plans"),
        ("", "[dev]"),
    ],
)
def test_the_subject_prefix_appears_once(subject: str, expected: str) -> None:
    assert prefixed(subject, "[dev]") == expected
