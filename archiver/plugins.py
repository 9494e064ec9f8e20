"""Finding the plug-ins: the parts beyond the core that register themselves.

The core never imports `lists` or `web` (DESIGN.md: dependencies point one way). Each
plug-in names a module in the `arsip.plugins` entry-point group of its distribution
(pyproject.toml), and that module offers any of these hooks as module-level functions:

- `cli_commands() -> list[click.Command]`: command groups added to `arsip`;
- `extensions() -> list[ExtensionFactory]`: parts that own addresses and handle their
  mail in the service (see `archiver.extensions`);
- `web_app_factory() -> Callable[[Core], WSGIApplication]`: the web UI;
- `readable_lists(session, addresses) -> tuple[str, ...]`: the List-Ids whose archives
  the owner of `addresses` may read;
- `load_models() -> None`: import the plug-in's models, so their tables are in
  `archiver.models.Base.metadata` for Alembic;
- `forget_messages(session, deleted) -> None`: drop the plug-in's own copies of
  messages the archive is deleting (`archiver.deleted`), in the deleting transaction.

Plug-ins are loaded on first use: a command that needs none of them (`arsip search`)
never imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click
    from sqlalchemy.orm import Session

    from archiver.core import Core, ExtensionFactory
    from archiver.deleted import DeletedMessages

GROUP = "arsip.plugins"


@cache
def plugins() -> tuple[ModuleType, ...]:
    """Every installed plug-in's hook module, in entry-point name order."""
    found = sorted(entry_points(group=GROUP), key=lambda point: point.name)
    return tuple(point.load() for point in found)


def _hooks(name: str) -> list[Callable[..., Any]]:
    return [getattr(module, name) for module in plugins() if hasattr(module, name)]


def cli_commands() -> list[click.Command]:
    """The command groups the plug-ins add to `arsip`."""
    return [command for hook in _hooks("cli_commands") for command in hook()]


def extensions() -> list[ExtensionFactory]:
    """The plug-ins' parts that own addresses and handle their mail."""
    return [factory for hook in _hooks("extensions") for factory in hook()]


def web_app_factory() -> Callable[[Core], Any] | None:
    """The web UI's application factory, or None when no plug-in serves one."""
    factories = _hooks("web_app_factory")
    return factories[0]() if factories else None


def readable_lists(session: Session, addresses: Iterable[str]) -> tuple[str, ...]:
    """The List-Ids whose archives the owner of `addresses` may read (none without the
    list engine)."""
    wanted = tuple(addresses)
    return tuple(
        sorted({list_id for hook in _hooks("readable_lists") for list_id in hook(session, wanted)})
    )


def load_models() -> None:
    """Import every plug-in's models into the shared metadata (for Alembic)."""
    for hook in _hooks("load_models"):
        hook()


def forget_messages(session: Session, deleted: DeletedMessages) -> None:
    """Let every plug-in drop its copies of the messages being deleted (a post waiting
    for a digest), in `session`'s transaction, so they go with the message or not at all."""
    if not deleted:
        return
    for hook in _hooks("forget_messages"):
        hook(session, deleted)
