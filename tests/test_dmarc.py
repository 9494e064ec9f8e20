"""DMARC policy lookup against a real DNS server that each test starts on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lists.dmarc import DmarcLookup, needs_mitigation, organizational_domain, parse_record
from tests.support import Records, TinyDns


class FakeClock:
    """A clock the test moves by hand, so cache expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns_server() -> Iterator:
    """Factory for loopback DNS servers; all are stopped at the end of the test."""
    servers: list[TinyDns] = []

    def start(records: Records, servfail: set[str] | None = None) -> TinyDns:
        servers.append(TinyDns(records, servfail))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback UDP port where a socket is bound but never replies."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_reject_policy_is_found_and_cached(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject; rua=mailto:d@example.com"]})
    lookup = server.lookup()

    assert lookup.policy("example.com") == "reject"
    assert lookup.policy("example.com") == "reject"
    assert server.queries["_dmarc.example.com"] == 1
    assert needs_mitigation(lookup.policy("example.com"))


def test_cached_policy_is_asked_again_once_its_ttl_has_passed(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject"]})
    clock = FakeClock()
    lookup = server.lookup(ttl=3600.0, clock=clock)

    lookup.policy("example.com")
    clock.now += 3599
    lookup.policy("example.com")
    assert server.queries["_dmarc.example.com"] == 1

    server.records["_dmarc.example.com"] = ["v=DMARC1; p=none"]
    clock.now += 2
    assert lookup.policy("example.com") == "none"
    assert server.queries["_dmarc.example.com"] == 2


def test_domain_is_cached_whatever_its_spelling(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject"]})
    lookup = server.lookup()

    assert lookup.policy("example.com") == "reject"
    assert lookup.policy("Example.COM.") == "reject"
    assert server.queries["_dmarc.example.com"] == 1


def test_quarantine_policy_needs_mitigation(dns_server) -> None:
    server = dns_server({"_dmarc.example.org": ["v=DMARC1; p=quarantine; pct=100"]})

    policy = server.lookup().policy("example.org")

    assert policy == "quarantine"
    assert needs_mitigation(policy)


def test_p_none_is_reported_but_needs_no_mitigation(dns_server) -> None:
    server = dns_server({"_dmarc.example.net": ["v=DMARC1; p=none; rua=mailto:d@example.net"]})

    policy = server.lookup().policy("example.net")

    assert policy == "none"
    assert not needs_mitigation(policy)


def test_subdomain_without_record_falls_back_to_org_domain_sp(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=none; sp=reject"]})
    lookup = server.lookup()

    assert lookup.policy("mail.example.com") == "reject"
    assert lookup.policy("example.com") == "none"
    assert server.queries["_dmarc.mail.example.com"] == 1
    assert server.queries["_dmarc.example.com"] == 1


def test_subdomain_falls_back_to_org_p_when_there_is_no_sp(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=quarantine"]})

    assert server.lookup().policy("a.b.example.com") == "quarantine"


def test_subdomain_record_of_its_own_wins_over_org_domain(dns_server) -> None:
    server = dns_server(
        {
            "_dmarc.example.com": ["v=DMARC1; p=reject; sp=reject"],
            "_dmarc.news.example.com": ["v=DMARC1; p=none"],
        }
    )
    lookup = server.lookup()

    assert lookup.policy("news.example.com") == "none"
    assert server.queries["_dmarc.example.com"] == 0


def test_subdomain_under_country_second_level_falls_back_to_registered_domain(dns_server) -> None:
    server = dns_server({"_dmarc.example.co.uk": ["v=DMARC1; p=reject"]})

    assert server.lookup().policy("lists.example.co.uk") == "reject"
    assert server.queries["_dmarc.co.uk"] == 0


def test_domain_without_record_is_none_and_negative_cached(dns_server) -> None:
    server = dns_server({})
    clock = FakeClock()
    lookup = server.lookup(negative_ttl=600.0, clock=clock)

    assert lookup.policy("norecord.example") is None
    assert not needs_mitigation(lookup.policy("norecord.example"))
    clock.now += 599
    assert lookup.policy("norecord.example") is None
    assert server.queries["_dmarc.norecord.example"] == 1

    server.records["_dmarc.norecord.example"] = ["v=DMARC1; p=reject"]
    clock.now += 2
    assert lookup.policy("norecord.example") == "reject"
    assert server.queries["_dmarc.norecord.example"] == 2


def test_name_without_txt_records_is_no_record(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": []})

    assert server.lookup().policy("example.com") is None


def test_two_records_are_treated_as_none(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})

    assert server.lookup().policy("example.com") is None


def test_record_next_to_other_txt_records_is_used(dns_server) -> None:
    server = dns_server(
        {"_dmarc.example.com": ["site-verification=abc123", "v=DMARC1; p=quarantine"]}
    )

    assert server.lookup().policy("example.com") == "quarantine"


def test_record_split_into_several_strings_is_joined(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": [("v=DMARC1; p=rej", "ect; rua=mailto:d@x.test")]})

    assert server.lookup().policy("example.com") == "reject"


def test_record_with_unknown_policy_is_none(dns_server) -> None:
    server = dns_server(
        {"_dmarc.example.com": ["v=DMARC1; p=block"], "_dmarc.example.org": ["v=DMARC1; sp=none"]}
    )
    lookup = server.lookup()

    assert lookup.policy("example.com") is None
    assert lookup.policy("example.org") is None


def test_silent_server_gives_none_within_about_the_timeout(silent_port: int) -> None:
    clock = FakeClock()
    lookup = DmarcLookup(nameservers=["127.0.0.1"], port=silent_port, timeout=0.5, clock=clock)

    started = time.monotonic()
    assert lookup.policy("mail.example.com") is None
    assert 0.4 <= time.monotonic() - started < 1.5

    # The failure is remembered for a minute: further posts do not wait again.
    clock.now += 59
    started = time.monotonic()
    assert lookup.policy("mail.example.com") is None
    assert time.monotonic() - started < 0.1


def test_servfail_is_none_and_asked_again_after_a_minute(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject"]}, {"_dmarc.example.com"})
    clock = FakeClock()
    lookup = server.lookup(clock=clock)

    assert lookup.policy("example.com") is None
    clock.now += 59
    assert lookup.policy("example.com") is None
    assert server.queries["_dmarc.example.com"] == 1

    server.servfail.clear()
    clock.now += 2
    assert lookup.policy("example.com") == "reject"


def test_failed_lookup_of_the_exact_domain_does_not_guess_from_the_org_domain(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=reject"]}, {"_dmarc.mail.example.com"})

    assert server.lookup().policy("mail.example.com") is None
    assert server.queries["_dmarc.example.com"] == 0


def test_names_that_are_not_domains_are_none_without_asking(dns_server) -> None:
    server = dns_server({})
    lookup = server.lookup()

    assert lookup.policy("") is None
    assert lookup.policy("a..example") is None
    assert lookup.policy("x" * 300 + ".example") is None
    assert sum(server.queries.values()) == 0


def test_concurrent_posts_all_see_the_policy(dns_server) -> None:
    domains = [f"d{n}.example" for n in range(20)]
    server = dns_server({f"_dmarc.{domain}": ["v=DMARC1; p=reject"] for domain in domains})
    lookup = server.lookup()
    results: list[str | None] = []

    def post(domain: str) -> None:
        results.append(lookup.policy(domain))

    threads = [threading.Thread(target=post, args=(d,)) for d in domains * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == ["reject"] * len(threads)
    assert lookup.policy("d0.example") == "reject"


@pytest.mark.parametrize(
    ("policy", "mitigate"),
    [("reject", True), ("quarantine", True), ("none", False), (None, False)],
)
def test_needs_mitigation(policy: str | None, mitigate: bool) -> None:
    assert needs_mitigation(policy) is mitigate


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("example.co.uk", "example.co.uk"),
        ("lists.example.co.uk", "example.co.uk"),
        ("www.example.com.au", "example.com.au"),
        ("dept.uni.ac.jp", "uni.ac.jp"),
        ("mail.example.co", "example.co"),
        ("mail.co.example", "co.example"),
        ("com", "com"),
        ("co.uk", "co.uk"),
        ("mail.example.co.uk", "example.co.uk"),
        ("Mail.Example.COM", "example.com"),
        ("a.b.github.io", "b.github.io"),
        ("c.github.io", "c.github.io"),
        ("lists.school.k12.ca.us", "school.k12.ca.us"),
        ("www.city.kawasaki.jp", "city.kawasaki.jp"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_pages_on_a_shared_hosting_suffix_are_separate_organisations() -> None:
    assert organizational_domain("a.b.github.io") != organizational_domain("c.github.io")


@pytest.mark.parametrize(
    ("sender_domain", "parent"),
    [
        ("lists.school.k12.ca.us", "school.k12.ca.us"),
        ("news.project.github.io", "project.github.io"),
        ("mail.example.co.uk", "example.co.uk"),
    ],
)
def test_subdomain_inherits_its_organisations_reject_under_any_public_suffix(
    dns_server, sender_domain: str, parent: str
) -> None:
    server = dns_server({f"_dmarc.{parent}": ["v=DMARC1; p=reject"]})

    assert server.lookup().policy(sender_domain) == "reject"
    assert server.queries[f"_dmarc.{parent}"] == 1


def test_a_neighbour_on_a_shared_suffix_does_not_lend_its_policy(dns_server) -> None:
    server = dns_server({"_dmarc.alice.github.io": ["v=DMARC1; p=reject"]})

    assert server.lookup().policy("bob.github.io") is None
    assert server.queries["_dmarc.github.io"] == 0


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("v=DMARC1; p=reject", {"v": "DMARC1", "p": "reject"}),
        ("  V = dmarc1 ;P = Reject ; ", {"v": "dmarc1", "p": "Reject"}),
        ("v=DMARC1;p=none;p=reject", {"v": "DMARC1", "p": "none"}),
        ("v=DMARC1", {"v": "DMARC1"}),
        ("p=reject; v=DMARC1", None),
        ("v=DMARC2; p=reject", None),
        ("v=spf1 -all", None),
        ("", None),
    ],
)
def test_parse_record(text: str, tags: dict[str, str] | None) -> None:
    assert parse_record(text) == tags


def test_record_spelled_loosely_is_understood(dns_server) -> None:
    server = dns_server({"_dmarc.example.com": ["  V = dmarc1 ;P = Reject ; "]})

    assert server.lookup().policy("example.com") == "reject"
