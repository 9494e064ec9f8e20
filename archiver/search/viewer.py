"""Who is searching: the identity every search and message fetch is filtered by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Viewer:
    """A person looking at the archive.

    `sees_all` is for administrators and auditors. Everyone else sees the messages where one
    of their addresses is the sender, a header recipient or an envelope recipient, plus the
    archives of the lists in `readable_lists` (invariant 6).
    """

    addresses: frozenset[str] = frozenset()
    sees_all: bool = False
    readable_lists: frozenset[str] = frozenset()

    @classmethod
    def administrator(cls) -> Viewer:
        """Sees everything (the CLI's default, and auditors)."""
        return cls(sees_all=True)

    @classmethod
    def person(cls, *addresses: str, lists: tuple[str, ...] = ()) -> Viewer:
        """An ordinary user known by one or more addresses."""
        return cls(
            addresses=frozenset(address.strip().lower() for address in addresses),
            readable_lists=frozenset(list_id.lower() for list_id in lists),
        )
