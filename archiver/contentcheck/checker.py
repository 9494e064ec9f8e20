"""Checking a batch of messages with the configured daemons, within a time limit.

Every message of a worker's batch is checked at once (up to `concurrency` at a time, the
daemons' own child limits being the real bound), each daemon with `timeout` seconds per
message. A daemon that fails (refused, timed out, answered nonsense) is left alone for
`RETRY_AFTER` seconds, so a daemon that is down costs one timeout, not one per message;
meanwhile messages are marked unchecked by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from archiver.contentcheck.daemons import (
    DaemonAddress,
    SpamReport,
    clamd_ping,
    clamd_scan,
    spamd_ping,
    spamd_symbols,
)
from archiver.contentcheck.verdict import CLAMD, SPAMD, Verdict

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_AFTER = 30.0  # seconds a failed daemon is left alone
# A refused or reset connection, no answer in time, an answer cut short or too long, or
# one that is no verdict (`DaemonError`, a RuntimeError).
FAILURES = (OSError, TimeoutError, EOFError, asyncio.LimitOverrunError, RuntimeError)
PING_TIMEOUT = 2.0


@dataclass
class _Daemon:
    """One configured daemon and when it may be asked again after a failure."""

    name: str
    address: DaemonAddress
    down_until: float = 0.0

    def usable(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, exc: BaseException) -> None:
        if self.usable():
            log.warning(
                "%s at %s failed (%s); messages are marked unchecked by it for %d s",
                self.name,
                self.address,
                _describe(exc),
                RETRY_AFTER,
            )
        self.down_until = time.monotonic() + RETRY_AFTER


@dataclass
class ContentChecker:
    """Asks spamd and clamd (either may be None) about messages."""

    spamd: DaemonAddress | None
    clamd: DaemonAddress | None
    timeout: float = 10.0
    concurrency: int = 8
    spam_max_size: int = 512 * 1024  # spamc's limit too: bigger mail is rarely spam
    _daemons: dict[str, _Daemon] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for name, address in ((SPAMD, self.spamd), (CLAMD, self.clamd)):
            if address is not None:
                self._daemons[name] = _Daemon(name, address)

    @property
    def enabled(self) -> bool:
        return bool(self._daemons)

    def check(self, messages: list[bytes]) -> list[Verdict]:
        """A verdict per message (blocking; for the worker's thread)."""
        return asyncio.run(self.check_all(messages))

    async def check_all(self, messages: list[bytes]) -> list[Verdict]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(data: bytes) -> Verdict:
            async with limit:
                return await self.check_one(data)

        return list(await asyncio.gather(*(one(data) for data in messages)))

    async def check_one(self, data: bytes) -> Verdict:
        """Both daemons at once on one message."""
        report, virus = await asyncio.gather(self._spam(data), self._virus(data))
        unchecked = tuple(
            name
            for name, answer in ((SPAMD, report), (CLAMD, virus))
            if name in self._daemons and answer is _UNCHECKED
        )
        spam = report if isinstance(report, SpamReport) else None
        return Verdict(
            spam_score=spam.score if spam else None,
            spam_threshold=spam.threshold if spam else None,
            spam_rules=spam.rules if spam else (),
            virus=virus if isinstance(virus, str) else None,
            unchecked=unchecked,
        )

    async def _spam(self, data: bytes) -> SpamReport | object | None:
        daemon = self._daemons.get(SPAMD)
        if daemon is None or len(data) > self.spam_max_size:
            return None
        return await self._ask(daemon, lambda: spamd_symbols(daemon.address, data))

    async def _virus(self, data: bytes) -> str | object | None:
        daemon = self._daemons.get(CLAMD)
        if daemon is None:
            return None
        return await self._ask(daemon, lambda: clamd_scan(daemon.address, data))

    async def _ask(self, daemon: _Daemon, call: Callable[[], Awaitable[T]]) -> T | object:
        if not daemon.usable():
            return _UNCHECKED
        try:
            return await asyncio.wait_for(call(), self.timeout)
        except FAILURES as exc:
            daemon.failed(exc)
            return _UNCHECKED

    def availability(self) -> dict[str, bool]:
        """Whether each configured daemon answers a PING now (for `arsip stats`)."""
        return asyncio.run(self._pings())

    async def _pings(self) -> dict[str, bool]:
        pings = {SPAMD: spamd_ping, CLAMD: clamd_ping}

        async def ping(daemon: _Daemon) -> bool:
            try:
                return await asyncio.wait_for(pings[daemon.name](daemon.address), PING_TIMEOUT)
            except FAILURES:
                return False

        names = list(self._daemons)
        answers = await asyncio.gather(*(ping(self._daemons[name]) for name in names))
        return dict(zip(names, answers, strict=True))


_UNCHECKED = object()  # a daemon that was asked and could not answer


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
