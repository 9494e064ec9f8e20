"""The list engine's hooks into the core (found through the `arsip.plugins` entry point;
see `archiver.plugins`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click
    from sqlalchemy.orm import Session

    from archiver.core import ExtensionFactory
    from archiver.deleted import DeletedMessages


def cli_commands() -> list[click.Command]:
    """`arsip lists ...`."""
    from lists.cli import lists

    return [lists]


def extensions() -> list[ExtensionFactory]:
    """The list engine owns list addresses and handles their mail."""
    from lists.engine import ListEngine

    return [ListEngine]


def readable_lists(session: Session, addresses: Iterable[str]) -> tuple[str, ...]:
    """Public archives, and private ones of lists the addresses are members of."""
    from lists.access import readable_list_ids

    return readable_list_ids(session, addresses)


def load_models() -> None:
    """The list engine's tables."""
    import lists.models  # noqa: F401


def forget_messages(session: Session, deleted: DeletedMessages) -> None:
    """Posts waiting for a digest go with the archived messages they are copies of."""
    from lists.digesting import forget_posts

    forget_posts(session, deleted)
