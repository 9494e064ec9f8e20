"""Spam and viruses on a list: what members, owners, moderators and posters see when
spamd and clamd have looked at a post.

The rule is told with verdicts built by hand; the posting with verdicts on SQLite and
PostgreSQL; the whole story over SMTP, with the private spamd and clamd on loopback and
a smarthost sink, on SQLite.
"""

from __future__ import annotations

import email
import json
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default

import pytest
from flask import Flask
from sqlalchemy import select

from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.audit import AuditEntry
from archiver.contentcheck.daemons import DaemonAddress
from archiver.contentcheck.verdict import Verdict
from archiver.core import Core
from archiver.models import ContentCheck, Message
from lists import notices
from lists.admin import AdminError, ListSettings
from lists.arrival import arrive
from lists.dmarc import DmarcLookup
from lists.models import Action, HeldMessage, MailingList, Member, OutboxMessage, OutboxRecipient
from lists.posting import Poster
from lists.rules import Post, decide
from lists.rules.content_check import score_problem
from tests.daemons import EICAR, GTUBE, infected_message
from tests.support import (
    LIST_DOMAIN,
    RunningService,
    SmarthostSink,
    eventually,
    free_ports,
    quiet_dns,
    simple_message,
)
from tests.test_accounts import PASSWORD
from tests.test_list_rules import mailing_list
from tests.test_web_manage import browser, post_form
from tests.test_web_manage import settings_form as web_settings_form
from web import create_app

LIST = f"dev@{LIST_DOMAIN}"
OWNER = "owner@example.com"
MODERATOR = "mo@example.com"
ANN = "ann@example.org"
BOB = "bob@example.net"
SIGNATURE = "Eicar-Test-Signature"

GTUBE_VERDICT = Verdict(1000.0, 5.0, ("GTUBE", "NO_RECEIVED"))
SPAMMY = Verdict(7.5, 5.0, ("BAYES_99", "HTML_ONLY"))
CLEAN = Verdict(0.4, 5.0, ("NO_RECEIVED",))
VIRUS = Verdict(0.4, 5.0, (), virus=SIGNATURE)
NO_SPAMD = Verdict(unchecked=("spamd",))


# -- the rule, on verdicts built by hand ------------------------------------------------


def a_post(
    verdict: Verdict | None, roles: frozenset[str] = frozenset({"member"}), **settings: object
) -> Post:
    message = email.message_from_bytes(
        simple_message("p@example.org", subject="Plans", sender=ANN, to=LIST), policy=default
    )
    assert isinstance(message, EmailMessage)
    return Post(
        mlist=mailing_list(**settings),
        message=message,
        size=500,
        sender=ANN,
        roles=roles,
        moderated=False,
        banned=False,
        verdict=verdict,
    )


@pytest.mark.parametrize(
    ("story", "the_post", "action"),
    [
        ("with the checks off nothing changes", a_post(None), Action.ACCEPT),
        ("a clean post goes out", a_post(CLEAN), Action.ACCEPT),
        ("a post with a virus is discarded", a_post(VIRUS), Action.DISCARD),
        (
            "a virus is discarded even from an owner",
            a_post(VIRUS, roles=frozenset({"owner"})),
            Action.DISCARD,
        ),
        (
            "a virus is discarded even in emergency moderation",
            a_post(VIRUS, emergency=True),
            Action.DISCARD,
        ),
        ("a likely spam is held", a_post(SPAMMY), Action.HOLD),
        ("GTUBE is above the default discard score", a_post(GTUBE_VERDICT), Action.DISCARD),
        (
            "with a higher discard score GTUBE is held",
            a_post(GTUBE_VERDICT, spam_discard_score=2000.0),
            Action.HOLD,
        ),
        ("the hold score itself holds", a_post(Verdict(5.0, 5.0)), Action.HOLD),
        ("the discard score itself discards", a_post(Verdict(15.0, 5.0)), Action.DISCARD),
        ("just below the hold score goes out", a_post(Verdict(4.9, 5.0)), Action.ACCEPT),
        (
            "a list may hold at a lower score than spamd's own",
            a_post(Verdict(3.0, 5.0), spam_hold_score=2.5),
            Action.HOLD,
        ),
        (
            "spam from an owner's address is held too (it is easy to forge)",
            a_post(SPAMMY, roles=frozenset({"owner"})),
            Action.HOLD,
        ),
        ("a post spamd could not check is held", a_post(NO_SPAMD), Action.HOLD),
        (
            "a post spamd could not check goes out where the list accepts unchecked posts",
            a_post(NO_SPAMD, unchecked_posts="accept"),
            Action.ACCEPT,
        ),
        (
            "a virus found while spamd was down is still discarded",
            a_post(Verdict(unchecked=("spamd",), virus=SIGNATURE), unchecked_posts="accept"),
            Action.DISCARD,
        ),
    ],
)
def test_content_check_decisions(story: str, the_post: Post, action: Action) -> None:
    decision = decide(the_post)
    assert decision.action is action, story
    if action is not Action.ACCEPT:
        assert decision.rule == "content-check", story


def test_the_hold_reason_shows_score_and_rules_and_spares_the_sender() -> None:
    decision = decide(a_post(GTUBE_VERDICT, spam_discard_score=2000.0))
    assert "score 1000.0 (GTUBE, NO_RECEIVED)" in str(decision.reason)
    assert "5 or more" in str(decision.reason)
    assert not decision.tell_sender  # spam's From is mostly forged: no backscatter


def test_the_virus_reason_names_the_signature() -> None:
    assert SIGNATURE in str(decide(a_post(VIRUS)).reason)


def test_an_unchecked_post_is_held_naming_the_daemon() -> None:
    decision = decide(a_post(Verdict(unchecked=("spamd", "clamd"))))
    assert str(decision.reason).startswith("content check unavailable")
    assert "spamd and clamd" in str(decision.reason)
    assert decision.tell_sender


@pytest.mark.parametrize(
    ("hold", "discard", "problem"),
    [
        (5.0, 15.0, ""),
        (7.0, 7.0, ""),
        (0.5, 2000.0, ""),
        (20.0, 15.0, "must not be above"),
        (0.0, 15.0, "above 0"),
        (-1.0, 15.0, "above 0"),
        (5.0, float("inf"), "above 0"),
        (float("nan"), 15.0, "above 0"),
    ],
)
def test_spam_scores_are_positive_and_hold_comes_first(
    hold: float, discard: float, problem: str
) -> None:
    found = score_problem(hold, discard)
    assert (problem in str(found)) if problem else found is None


def test_the_virus_notice_names_the_post_and_carries_none_of_it() -> None:
    notice = notices.virus_discarded(
        mailing_list(), OWNER, ANN, "Your invoice", "<v@example.org>", SIGNATURE
    )
    body = notice.get_content()
    for fact in (ANN, "Your invoice", "<v@example.org>", SIGNATURE, "not attached"):
        assert fact in body
    assert not notice.is_multipart()
    assert notice["To"] == OWNER


def test_the_settings_form_checks_the_spam_scores() -> None:
    changes = ListSettings.from_form(
        web_settings_form(
            spam_hold_score="6.5", spam_discard_score="2000", unchecked_posts="accept"
        )
    ).changes()
    assert changes["spam_hold_score"] == 6.5
    assert changes["spam_discard_score"] == 2000.0
    assert changes["unchecked_posts"] == "accept"
    # a form from before these fields keeps the list's values
    assert "spam_hold_score" not in ListSettings.from_form(web_settings_form()).changes()
    for bad in (
        {"spam_hold_score": "20", "spam_discard_score": "15"},
        {"spam_hold_score": "0", "spam_discard_score": "15"},
        {"spam_hold_score": "lots", "spam_discard_score": "15"},
        {"spam_hold_score": "5"},
        {"unchecked_posts": "maybe"},
    ):
        with pytest.raises(AdminError):
            ListSettings.from_form(web_settings_form(**bad))


# -- posting with verdicts, on SQLite and PostgreSQL -------------------------------------


@pytest.fixture
def dev(core: Core) -> int:
    """The list dev@ (owner OWNER, moderator MODERATOR, members ANN and BOB); its id."""
    with core.sessions.begin() as session:
        mlist = MailingList(name="dev", domain=LIST_DOMAIN, dmarc="never")
        session.add(mlist)
        session.flush()
        session.add(Member(list_id=mlist.id, address=OWNER, role="owner"))
        session.add(Member(list_id=mlist.id, address=MODERATOR, role="moderator"))
        session.add(Member(list_id=mlist.id, address=ANN))
        session.add(Member(list_id=mlist.id, address=BOB))
        return mlist.id


def receive(core: Core, list_id: int, data: bytes, verdict: Verdict | None) -> Action:
    dns = quiet_dns().lookup()
    poster = Poster(core.archive, dns, "https://lists.test")
    raw = RawMessage(data, ANN, [LIST], datetime.now(UTC), "smtp", "Q1", verdict=verdict)
    arrival = arrive(raw, dns, policy=True, proof=True)
    with core.sessions.begin() as session:
        mlist = session.get(MailingList, list_id)
        assert mlist is not None
        return poster.receive(session, mlist, arrival)


def queued(core: Core) -> dict[str, list[tuple[str, bytes]]]:
    """Everything in the outbox, by recipient: (kind, bytes)."""
    found: dict[str, list[tuple[str, bytes]]] = {}
    with core.sessions() as session:
        rows = session.execute(
            select(OutboxRecipient.address, OutboxMessage.kind, OutboxMessage.data).join(
                OutboxMessage, OutboxMessage.id == OutboxRecipient.message_id
            )
        )
        for address, kind, data in rows:
            found.setdefault(address, []).append((kind, data))
    return found


def eicar_post() -> bytes:
    return infected_message(f"eicar.{time.monotonic_ns()}@example.org", to=LIST, sender=ANN)


def test_a_virus_is_dropped_and_only_the_owners_hear_of_it(core: Core, dev: int) -> None:
    assert receive(core, dev, eicar_post(), VIRUS) is Action.DISCARD
    out = queued(core)
    assert set(out) == {OWNER}
    ((kind, data),) = out[OWNER]
    assert kind == "notice"
    assert SIGNATURE.encode() in data and ANN.encode() in data
    assert b"The invoice you asked for" in data
    assert EICAR not in data and b"invoice.com" not in data
    with core.sessions() as session:
        assert session.scalar(select(HeldMessage.id)) is None
        assert session.scalar(select(Message.id)) is None  # nothing archived as a list post


def test_held_spam_is_shown_to_moderators_and_approval_still_delivers_it(
    core: Core, dev: int
) -> None:
    assert receive(core, dev, simple_message("s@x", sender=ANN, to=LIST), SPAMMY) is Action.HOLD
    with core.sessions() as session:
        held = session.scalars(select(HeldMessage)).one()
        assert "score 7.5 (BAYES_99, HTML_ONLY)" in held.reason
    out = queued(core)
    assert set(out) == {OWNER, MODERATOR}  # the poster is not told: spam's From is forged
    assert b"BAYES_99" in out[MODERATOR][0][1]
    poster = Poster(core.archive, DmarcLookup(), "https://lists.test")
    with core.sessions.begin() as session:
        answer = poster.moderate(session, session.scalars(select(HeldMessage)).one(), "approve")
    assert "approved" in str(answer)
    out = queued(core)
    assert any(kind == "post" for kind, _ in out[BOB])
    with core.sessions() as session:  # the archived copy is flagged as the check said
        check = session.scalars(select(ContentCheck)).one()
        assert check.spam_score == 7.5 and "BAYES_99" in check.spam_rules


def test_the_archived_copy_of_a_delivered_post_keeps_its_verdict(core: Core, dev: int) -> None:
    assert receive(core, dev, simple_message("c@x", sender=ANN, to=LIST), CLEAN) is Action.ACCEPT
    with core.sessions() as session:
        check = session.scalars(select(ContentCheck)).one()
        assert (check.spam_score, check.spam_rules, check.virus) == (0.4, "NO_RECEIVED", None)
    assert {kind for kind, _ in queued(core)[BOB]} == {"post"}


def test_with_checks_off_a_post_goes_out_unflagged(core: Core, dev: int) -> None:
    assert receive(core, dev, simple_message("o@x", sender=ANN, to=LIST), None) is Action.ACCEPT
    with core.sessions() as session:
        assert session.scalar(select(ContentCheck.message_pk)) is None
        assert session.scalar(select(Message.id)) is not None


def test_moderators_see_score_and_rules_on_the_held_page_and_owners_set_the_scores(
    core: Core, dev: int
) -> None:
    with core.sessions.begin() as session:
        for address in (OWNER, MODERATOR):
            add_user(session, address, "user", PASSWORD)
    receive(core, dev, simple_message("w@x", sender=ANN, to=LIST), SPAMMY)
    app: Flask = create_app(core)
    moderator = browser(app, MODERATOR)
    page = moderator.get(f"/lists/{LIST}/held").get_data(as_text=True)
    assert "score 7.5 (BAYES_99, HTML_ONLY)" in page
    owner = browser(app, OWNER)
    settings = f"/lists/{LIST}/settings"
    shown = owner.get(settings).get_data(as_text=True)
    assert 'name="spam_hold_score" value="5"' in shown
    assert 'name="spam_discard_score" value="15"' in shown
    form = web_settings_form(
        subscription="open",
        archive="public",
        dmarc="never",
        spam_hold_score="6",
        spam_discard_score="2000",
        unchecked_posts="accept",
    )
    assert post_form(owner, settings, settings, **form).status_code == 302
    refused = post_form(
        owner, settings, settings, **{**form, "spam_hold_score": "3000", "description": "x"}
    )
    assert refused.status_code == 400
    assert "must not be above the discard score" in refused.get_data(as_text=True)
    with core.sessions() as session:
        mlist = session.get(MailingList, dev)
        assert mlist is not None
        assert (mlist.spam_hold_score, mlist.spam_discard_score) == (6.0, 2000.0)
        assert mlist.unchecked_posts == "accept"
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "list.settings")
        ).one()
    assert entry.actor == OWNER
    assert entry.details["changed"]["spam_discard_score"] == [15.0, 2000.0]
    assert entry.details["changed"]["unchecked_posts"] == ["hold", "accept"]


# -- the story over SMTP, with real daemons (SQLite) -------------------------------------


@pytest.fixture
def sink():
    with SmarthostSink() as running:
        yield running


def checked_service(
    make_service, sink: SmarthostSink, spamd: DaemonAddress | str, clamd: DaemonAddress | None
) -> RunningService:
    """A running service whose posts spamd (and clamd) check, with the list dev@."""
    env = {"ARSIP_SMARTHOST": sink.address, "ARSIP_SPAMD": str(spamd)}
    if clamd is not None:
        env["ARSIP_CLAMD"] = str(clamd)
    service = make_service(**env)
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    service.run_cli("lists", "add-member", LIST, ANN, BOB, "--no-confirm", check=True)
    return service


@pytest.fixture
def checked(make_service, sink: SmarthostSink, spamd, clamd) -> RunningService:
    return checked_service(make_service, sink, spamd, clamd)


def a_message(subject: str, body: str = "Hello list.\n") -> bytes:
    message = EmailMessage()
    message["From"] = ANN
    message["To"] = LIST
    message["Subject"] = subject
    message["Message-ID"] = f"<{time.monotonic_ns()}@example.org>"
    message.set_content(body)
    return message.as_bytes()


def send(service: RunningService, data: bytes) -> None:
    with service.smtp() as client:
        client.sendmail(ANN, [LIST], data)


def subjects(sink: SmarthostSink, address: str) -> list[str]:
    return [
        str(email.message_from_bytes(data, policy=default)["Subject"])
        for _, data in sink.messages_to(address)
    ]


def after_a_clean_post(service: RunningService, sink: SmarthostSink, subject: str) -> None:
    """Send a clean post and wait until every member has it: whatever was posted before
    has been dealt with by then (the spool is worked in order)."""
    send(service, a_message(subject))
    eventually(
        lambda: all(f"[dev] {subject}" in subjects(sink, m) for m in (ANN, BOB)),
        what="the clean post to reach every member",
    )


def held(service: RunningService) -> list[dict]:
    return json.loads(service.run_cli("lists", "held", LIST, "--json").stdout)


def test_a_clean_post_reaches_every_member(checked: RunningService, sink: SmarthostSink) -> None:
    after_a_clean_post(checked, sink, "Release plan")
    assert subjects(sink, ANN) == subjects(sink, BOB) == ["[dev] Release plan"]
    assert held(checked) == []


def test_gtube_is_discarded_by_default_and_held_below_the_discard_score(
    checked: RunningService, sink: SmarthostSink
) -> None:
    send(checked, a_message("Cheap watches", f"{GTUBE}\n"))
    after_a_clean_post(checked, sink, "First fence")
    assert held(checked) == []
    assert not sink.messages_to(OWNER)  # discarded spam bothers nobody
    for member in (ANN, BOB):
        assert subjects(sink, member) == ["[dev] First fence"]

    checked.run_cli("lists", "set", LIST, "--spam-discard", "2000", check=True)
    send(checked, a_message("Cheaper watches", f"{GTUBE}\n"))
    (notice_data,) = sink.wait_for(OWNER)
    notice = email.message_from_bytes(notice_data, policy=default)
    assert "requires approval" in str(notice["Subject"])
    text = notice.get_body(preferencelist=("plain",)).get_content()
    assert "GTUBE" in text and "score 1" in text
    (post,) = held(checked)
    assert "GTUBE" in post["reason"] and "likely spam" in post["reason"]
    after_a_clean_post(checked, sink, "Second fence")
    for member in (ANN, BOB):  # the poster (ANN) is not told either
        assert subjects(sink, member) == ["[dev] First fence", "[dev] Second fence"]

    # the moderator's decision wins
    checked.run_cli("lists", "moderate", LIST, str(post["id"]), "approve", check=True)
    sink.wait_for(BOB, count=3)
    assert "[dev] Cheaper watches" in subjects(sink, BOB)


def test_a_post_with_a_virus_is_dropped_and_the_owners_are_told(
    checked: RunningService, sink: SmarthostSink
) -> None:
    send(checked, eicar_post())
    (notice_data,) = sink.wait_for(OWNER)
    notice = email.message_from_bytes(notice_data, policy=default)
    assert "virus" in str(notice["Subject"])
    text = notice.get_content()
    assert ANN in text and "The invoice you asked for" in text and "eicar" in text.lower()
    assert not notice.is_multipart() and EICAR not in notice_data
    after_a_clean_post(checked, sink, "Fence")
    for member in (ANN, BOB):  # the sender (ANN) gets no rejection quoting it
        assert subjects(sink, member) == ["[dev] Fence"]
    assert held(checked) == []


def test_a_post_no_daemon_could_check_is_held_unless_the_list_accepts_it(
    make_service, sink: SmarthostSink
) -> None:
    nobody_listens = f"127.0.0.1:{free_ports(1)[0]}"
    service = checked_service(make_service, sink, nobody_listens, None)
    send(service, a_message("Unchecked"))
    sink.wait_for(OWNER)
    sink.wait_for(ANN)  # the poster's notice may go out after the owner's
    (post,) = held(service)
    assert post["reason"].startswith("content check unavailable") and "spamd" in post["reason"]
    assert any("awaits approval" in s for s in subjects(sink, ANN))  # a real poster is told

    service.run_cli("lists", "set", LIST, "--unchecked-posts", "accept", check=True)
    send(service, a_message("Unchecked but accepted"))
    sink.wait_for(BOB)
    assert subjects(sink, BOB) == ["[dev] Unchecked but accepted"]


def test_the_cli_sets_and_shows_the_spam_settings_and_refuses_bad_ones(
    make_service, sqlite_url: str
) -> None:
    service = make_service(sqlite_url, start=False)  # settings need no running service
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    run = service.run_cli
    shown = json.loads(run("lists", "show", LIST, "--json").stdout)
    assert (shown["spam_hold_score"], shown["spam_discard_score"]) == (5.0, 15.0)
    assert shown["unchecked_posts"] == "hold"
    run("lists", "set", LIST, "--spam-hold", "8", "--spam-discard", "30", check=True)
    for bad, says in (
        (("--spam-hold", "40"), "must not be above the discard score (30)"),
        (("--spam-discard", "6"), "must not be above the discard score (6)"),
        (("--spam-hold", "0"), "above 0"),
        (("--spam-hold", "many"), "takes a number"),
    ):
        refused = run("lists", "set", LIST, *bad)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    shown = json.loads(run("lists", "show", LIST, "--json").stdout)
    assert (shown["spam_hold_score"], shown["spam_discard_score"]) == (8.0, 30.0)
    with service.core().sessions() as session:
        changed = [
            e.details["changed"]
            for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "list.settings"))
        ]
    assert changed == [{"spam_hold_score": [5.0, 8.0], "spam_discard_score": [15.0, 30.0]}]
