"""The intake reads plain envelope paths itself and gets what aiosmtpd's parser gets."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.intake import IntakeSMTP

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=8)
dot_atoms = st.lists(atoms, min_size=1, max_size=3).map(".".join)
odd = st.sampled_from(
    ['"a b"', "a..b", ".a", "a.", "[127.0.0.1]", "é", "a b", "(c)", "", "<", ">", "@x:"]
)
parts = st.one_of(dot_atoms, odd, st.text(max_size=6))
params = st.sampled_from(
    ["", " ", " SIZE=1234", "   BODY=8BITMIME SMTPUTF8", " (note) SIZE=1", "\t"]
)


def _outcome(server: SMTP, arg: str) -> object:
    """What `_getaddr` returns, or the kind of error it raises (the email package's parser
    fails on some malformed paths; ours must fail on the same ones)."""
    try:
        return server._getaddr(arg)
    except Exception as exc:
        return type(exc)


def _servers(limit: int) -> tuple[SMTP, IntakeSMTP]:
    loop = asyncio.new_event_loop()
    try:
        stock = SMTP(object(), loop=loop)
        ours = IntakeSMTP(object(), data_size_limit=1024, loop=loop)
    finally:
        loop.close()
    stock.local_part_limit = ours.local_part_limit = limit
    return stock, ours


@settings(max_examples=2000, deadline=None)
@given(
    lead=st.sampled_from(["", " ", "  "]),
    local=parts,
    domain=parts,
    rest=params,
    limit=st.sampled_from([0, 6, 64]),
)
def test_envelope_paths_read_as_aiosmtpd_reads_them(
    lead: str, local: str, domain: str, rest: str, limit: int
) -> None:
    stock, ours = _servers(limit)
    for arg in (f"{lead}<{local}@{domain}>{rest}", f"{lead}{local}@{domain}{rest}", "<>"):
        assert _outcome(ours, arg) == _outcome(stock, arg), arg
