"""A column's membership in a large set of ids, sent to the database as one parameter.

A case's scope is a set of message ids that may run to tens of thousands; an IN list of
that many parameters passes what SQLite and PostgreSQL take in one statement (32,766 and
65,535 parameters). One parameter holding them all has no such limit: a JSON array that
SQLite unpacks with `json_each`, a bigint array that PostgreSQL compares with `ANY`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, String, bindparam, false
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler


class _InIds(ColumnElement[bool]):
    """`column IN ids`, compiled per database below."""

    inherit_cache = False  # the ids are part of the statement's text as one value
    type = Boolean()

    def __init__(self, column: ColumnElement[int], ids: list[int]) -> None:
        self.column = column
        self.ids = ids


def in_ids(column: ColumnElement[int], ids: Iterable[int]) -> ColumnElement[bool]:
    """A condition that holds where `column` is one of `ids` (never, when there are none)."""
    wanted = sorted(ids)
    return _InIds(column, wanted) if wanted else false()


@compiles(_InIds)
def _json_each(element: _InIds, compiler: SQLCompiler, **kw: Any) -> str:
    ids = bindparam(None, json.dumps(element.ids), type_=String(), unique=True)
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(ids, **kw)}))"


@compiles(_InIds, "postgresql")
def _any(element: _InIds, compiler: SQLCompiler, **kw: Any) -> str:
    ids = bindparam(None, element.ids, type_=ARRAY(BigInteger()), unique=True)
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(ids, **kw)})"
