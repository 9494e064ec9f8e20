"""The JSON API: bearer tokens, the same access rules as the pages, an OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

import web.search
from archiver.accounts import add_user, find_user, new_api_token
from archiver.core import Core
from archiver.search.indexer import Indexer
from lists.models import MailingList, Member
from tests.test_search import ALICE, BOB, MESSAGES, sample_copies
from web import create_app


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """The sample archive, indexed; alice and an admin have API tokens; alice owns dev@."""
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, sample_copies(MESSAGES, now))
        dev = MailingList(name="dev", domain="lists.example.com", display_name="dev")
        session.add(dev)
        session.flush()
        session.add(Member(list_id=dev.id, address=ALICE, role="owner"))
        session.add(Member(list_id=dev.id, address="carol@example.org"))
        add_user(session, "admin@example.com", "admin")
        add_user(session, ALICE, "user")
        add_user(session, BOB, "user")
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()
    built = create_app(core)
    yield built
    built.extensions[web.search.BACKEND_KEY].close()


def token(core: Core, email: str) -> dict[str, str]:
    with core.sessions.begin() as session:
        user = find_user(session, email)
        assert user is not None
        return {"Authorization": f"Bearer {new_api_token(session, user)}"}


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_without_a_valid_token_the_api_answers_401(client: FlaskClient) -> None:
    assert client.get("/api/v1/search?q=forecast").status_code == 401
    wrong = client.get("/api/v1/search", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_search_returns_what_the_cli_prints_within_the_users_rights(
    client: FlaskClient, core: Core
) -> None:
    mine = client.get("/api/v1/search?q=forecast", headers=token(core, ALICE)).get_json()
    assert set(mine) == {"total", "total_exact", "results", "facets"}
    assert mine["total_exact"] is True  # a handful of matches are counted, not estimated
    # her own two, and the post to the public list dev@
    assert {r["message_id"] for r in mine["results"]} == {
        "q1@example.com",
        "q2@example.com",
        "list@example.com",
    }
    assert client.get("/api/v1/search?q=lunch", headers=token(core, ALICE)).get_json()["total"] == 0
    everything = client.get("/api/v1/search?q=lunch", headers=token(core, "admin@example.com"))
    assert everything.get_json()["total"] == 1
    bad = client.get("/api/v1/search?q=from:", headers=token(core, ALICE))
    assert bad.status_code == 400 and "position" in bad.get_json()
    unknown = client.get("/api/v1/search?q=forecast+sender:bob", headers=token(core, ALICE))
    assert unknown.status_code == 400
    assert unknown.get_json()["position"] == 9
    assert unknown.get_json()["error"].startswith("'sender:' is not a search field")


def test_a_message_is_404_unless_the_user_may_see_it(client: FlaskClient, core: Core) -> None:
    alice = token(core, ALICE)
    own = client.get("/api/v1/messages/q1@example.com", headers=alice)
    assert own.status_code == 200
    data = own.get_json()
    assert data["subject"] == "Quarterly forecast" and "looks good" in data["text"]
    assert client.get("/api/v1/messages/lunch@example.com", headers=alice).status_code == 404
    assert client.get("/api/v1/messages/nothing@example.com", headers=alice).status_code == 404
    thread = client.get(f"/api/v1/threads/{data['thread_id']}", headers=alice).get_json()
    assert [m["message_id"] for m in thread["messages"]] == ["q1@example.com", "q2@example.com"]


def test_members_are_for_owners_and_admins(client: FlaskClient, core: Core) -> None:
    url = "/api/v1/lists/dev@lists.example.com/members"
    owner = client.get(url, headers=token(core, ALICE)).get_json()
    assert {m["address"] for m in owner["members"]} == {ALICE, "carol@example.org"}
    assert client.get(url, headers=token(core, "admin@example.com")).status_code == 200
    assert client.get(url, headers=token(core, BOB)).status_code == 404
    listed = client.get("/api/v1/lists", headers=token(core, BOB)).get_json()
    assert [m["address"] for m in listed["lists"]] == ["dev@lists.example.com"]


def test_the_openapi_document_describes_every_path(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/v1/search",
        "/api/v1/messages/{message_id}",
        "/api/v1/threads/{thread_id}",
        "/api/v1/lists",
        "/api/v1/lists/{list}/members",
    }


def test_the_wsgi_module_builds_the_app_from_the_settings(tmp_path, monkeypatch) -> None:
    import importlib

    monkeypatch.setenv("ARSIP_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module("web.wsgi")
    assert "/api/v1/openapi.json" in {rule.rule for rule in module.app.url_map.iter_rules()}
