"""Building the core's parts from settings, and running them as one service.

`arsip serve` runs the intake in one process, the spool worker, indexer and scheduler in
child processes and the web UI in a few more, so that neither parsing mail nor rendering
pages competes with the intake for the interpreter lock, and pages use every core. The
parent binds every listening socket itself before any child starts, so a busy port fails
start-up at once, and hands the web ones to its children. Each child watches its parent
and exits when the parent dies, so a `kill -9` of the service leaves nothing behind that
still writes; the parent stops the whole service when a child dies, for the supervisor
(systemd) to restart it.

`--role` picks a subset, for deployments of many processes on one PostgreSQL database
and one shared data directory (README, "Running on several machines"): any number of
intake, worker and web processes; schedulers elect one of themselves (`scheduling`);
the whoosh index has one writer, the PostgreSQL one any number. On SQLite one service
owns the database.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib.metadata
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from archiver import localsocket
from archiver.config import Settings
from archiver.core import Core, ExtensionFactory, build_core
from archiver.db import (
    durability_problems,
    is_postgres,
)
from archiver.intake import IntakeHandler, bind_intake, start_servers
from archiver.listeners import listen
from archiver.localsocket import LocalServer
from archiver.locks import ProcessLock, ServeLock, process_label, process_lock
from archiver.logs import configure_logging
from archiver.notify import NotifiedWaker
from archiver.scheduling import run_scheduler
from archiver.schema import bring_up_to_date
from archiver.search.indexer import Indexer
from archiver.spool import GroupCommitter
from archiver.worker import Waker

log = logging.getLogger(__name__)

WORKER_NICENESS = 19
# The indexer beside an intake yields to it, but is not starved the way the idle worker
# may be: a long import must not leave a growing queue of mail that cannot be found.
INDEXER_NICENESS = 5
SWITCH_INTERVAL = 0.0005
WORKER_DRAIN_SECONDS = 30  # how long a stopping worker waits for its background jobs
WEB_THREADS = 8  # per web process: pages mostly wait on SQLite, the store and the index
CHILD_CHECK_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_NAME = 15
WHOOSH_VERSION = "2.7.4"
ROLES = ("intake", "worker", "indexer", "scheduler", "web")
BACKGROUND_ROLES = frozenset({"worker", "indexer", "scheduler"})  # run by background children


class StartError(RuntimeError):
    """The service cannot start as asked (a lock held elsewhere, a bad role)."""


class ChildDiedError(RuntimeError):
    """A process of the service died; the service stopped, for its supervisor to restart."""


def require_whoosh_version() -> None:
    """Refuse to start on a whoosh other than the one whose files Arsip reads directly.

    `archiver/search/whoosh_*.py` read whoosh 2.7.4's posting blocks, columns and table of
    contents themselves (whoosh is no longer developed); another version could read an
    index wrongly without an error. Asked of the package metadata, so that a process that
    does not search never imports whoosh.
    """
    found = importlib.metadata.version("whoosh")
    if found != WHOOSH_VERSION:
        raise StartError(
            f"the search index needs whoosh {WHOOSH_VERSION}, but whoosh {found} is installed:"
            f" pip install whoosh=={WHOOSH_VERSION}"
        )


def parse_roles(text: str) -> frozenset[str]:
    """`all`, or a comma-separated subset of `ROLES`."""
    names = {name.strip().lower() for name in text.split(",") if name.strip()}
    if not names:
        raise StartError(f"no role given: choose all or any of {', '.join(ROLES)}")
    if "all" in names:
        return frozenset(ROLES)
    unknown = sorted(names - set(ROLES))
    if unknown:
        raise StartError(
            f"unknown role {', '.join(unknown)}: choose all or any of {', '.join(ROLES)}"
        )
    return frozenset(names)


def _stop_with_parent(parent_pid: int) -> threading.Event:
    """An event set by SIGTERM or when the parent goes away; SIGINT is left to the parent.

    A child must not outlive the service: one that still wrote the spool or the index, or
    still held the web port, after its parent died would fight the next start. On Linux
    the kernel kills the child the moment the parent dies (however busy the machine, and
    whatever the child is blocked in); that is safe because everything after intake is
    transactional and redone on restart. Elsewhere, and as a second line, the child
    watches its parent and stops by itself.
    """
    _die_with_parent(parent_pid)
    _show_name()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_parent() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent_pid:
                log.warning("parent %d is gone; %s stopping", parent_pid, _process_name())
                stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    return stop


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux prctl)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("cannot ask to die with the parent: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _show_name() -> None:
    """Name this process in `ps`, `top` and /proc/PID/comm after its part of the service
    (the kernel keeps 15 bytes: `arsip-indexer`, `arsip-web-1`, `arsip-scheduler`), so an
    operator can tell the children apart."""
    if sys.platform.startswith("linux"):
        name = _process_name().encode()[:15]
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _process_name() -> str:
    return multiprocessing.current_process().name


def run_background_process(
    settings: Settings,
    parent_pid: int,
    roles: frozenset[str],
    extensions: Sequence[ExtensionFactory] = (),
    wake: Waker | None = None,
    intake_beside: bool = True,
) -> None:
    """Entry point of a background child: whichever of spool worker (with the
    extensions' delivery), indexer and scheduler candidate `roles` names, until the parent
    goes away. With the intake in the same service (`intake_beside`) it yields the CPU to
    it; a machine of workers alone runs them at normal priority."""
    configure_logging(settings)
    if intake_beside and roles == {"indexer"}:
        os.nice(INDEXER_NICENESS)
    elif intake_beside:
        # Taking mail in beats archiving it promptly: the worker runs on CPU time the
        # intake leaves idle and catches up afterwards (the spool holds the difference).
        _lower_priority()
    stop = _stop_with_parent(parent_pid)
    core = build_core(settings)
    core.extend(extensions)
    background = []
    if "indexer" in roles:
        background.append(threading.Thread(target=_index_forever, args=(core, stop)))
    if "scheduler" in roles:
        background.append(threading.Thread(target=run_scheduler, args=(core, stop, parent_pid)))
    for thread in background:
        thread.start()
    if "worker" in roles:
        if wake is None and is_postgres(core.engine):
            wake = NotifiedWaker(core.engine.url)  # the intake is another process
        for extension in core.extensions:
            background += extension.start(stop)
        core.worker().run_forever(stop, wake)
    else:
        stop.wait()
    # Let a delivery in flight record its outcome before the interpreter shuts down: after
    # that, asyncio.to_thread refuses work, and a batch the smarthost took would go again.
    for thread in background:
        thread.join(timeout=WORKER_DRAIN_SECONDS)


def run_web_process(
    settings: Settings,
    parent_pid: int,
    listeners: Sequence[socket.socket],
    web_app_factory: Callable[[Core], Any],
    extensions: Sequence[ExtensionFactory] = (),
    local_listener: socket.socket | None = None,
) -> None:
    """Entry point of a web child: serve pages from the shared listening sockets with
    waitress, and reading commands from the local socket (`archiver.localsocket`), until
    the parent goes away. The kernel spreads connections over the children that wait in
    `accept`, so no process in front has to balance them."""
    from waitress import create_server

    configure_logging(settings)
    stop = _stop_with_parent(parent_pid)
    core = build_core(settings)
    core.extend(extensions)  # the pages ask the extensions (lists) but never start them
    server = create_server(
        web_app_factory(core), sockets=list(listeners), threads=WEB_THREADS, ident="Arsip"
    )
    threading.Thread(target=server.run, name="arsip-web", daemon=True).start()
    local = LocalServer(core, local_listener) if local_listener is not None else None
    if local is not None:
        local.start()
    stop.wait()
    if local is not None:
        local.shutdown()
    server.close()


def background_children(roles: frozenset[str]) -> list[frozenset[str]]:
    """The background roles of each child to start. The indexer gets a process of its own:
    as a thread beside the worker it shared one interpreter lock with archiving and the
    worker's idle priority, and fell ever further behind during a long import."""
    background = roles & BACKGROUND_ROLES
    if "indexer" in background and len(background) > 1:
        return [frozenset({"indexer"}), background - {"indexer"}]
    return [background] if background else []


def _index_forever(core: Core, stop: threading.Event) -> None:
    """The indexer thread; a search backend that cannot be opened must not stop archiving."""
    while not stop.is_set():
        try:
            backend = core.search_backend()
        except Exception:
            log.exception("cannot open the search index; trying again in 10 s")
            stop.wait(10)
            continue
        try:
            indexer = Indexer(core.sessions, backend, core.store)
            if backend.needs_rebuild():
                _rebuild(indexer)
            indexer.run_forever(stop)
        finally:
            backend.close()


def _rebuild(indexer: Indexer) -> None:
    """Fill an index of a new format from the archive; on failure (another process may be
    rebuilding it) live indexing goes on and the next start tries again."""
    log.warning("the search index has a new format; rebuilding it from the archive")
    try:
        log.warning("search index rebuilt: %d messages", indexer.rebuild())
    except Exception:
        log.exception("rebuilding the search index failed; `arsip reindex` does it by hand")


def _lower_priority() -> None:
    """Run this process only when the CPU is otherwise idle (Linux), or at least niced."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(WORKER_NICENESS)


# Children are forked from the service once it has imported what they run (Linux): the
# code of Arsip and its libraries, some 60 MB a process, is then one copy in memory that
# every process shares, instead of a copy each. Elsewhere each child starts afresh.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def _forked_child(
    inherited: Sequence[socket.socket], target: Callable[..., None], *args: Any
) -> None:
    """A child's first step: close the service's listening sockets that it does not serve,
    so that only the processes meant to answer a port hold it open."""
    for listener in inherited:
        listener.close()
    target(*args)


class Service:
    """Everything `arsip serve` runs (or the `roles` it was given), started and stopped
    together."""

    def __init__(
        self,
        core: Core,
        web_app_factory: Callable[[Core], Any] | None = None,
        extensions: Sequence[ExtensionFactory] = (),
        roles: frozenset[str] = frozenset(ROLES),
    ) -> None:
        self.core = core
        self.web_app_factory = web_app_factory
        self.extension_factories = list(extensions)
        self.roles = roles
        core.extend(self.extension_factories)
        self._children: list[multiprocessing.process.BaseProcess] = []
        self._context = multiprocessing.get_context(START_METHOD)
        self._wake = self._context.Event()  # set by the intake after each spool commit
        self._died: multiprocessing.process.BaseProcess | None = None
        self._intake: list[tuple[socket.socket, type[SMTP]]] = []
        self._web: list[socket.socket] = []
        self._local: socket.socket | None = None

    def run(self) -> None:
        """Migrate, take the locks the roles need, bind every port, start every part, and
        block until SIGINT or SIGTERM, or until a child dies (`ChildDiedError`).

        Every listener is bound before any child starts, so a busy port fails start-up at
        once (an `OSError` for the CLI to report) and leaves nothing running.
        """
        settings = self.core.settings
        if settings.search_backend == "whoosh":
            require_whoosh_version()
        held = self._take_locks()  # before migrating: a refused process changes nothing
        try:
            self._run(settings)
        finally:
            for lock in held:
                lock.release()
        if self._died is not None:
            raise ChildDiedError(
                f"{self._died.name} exited with status {self._died.exitcode}; service stopped"
            )

    def _run(self, settings: Settings) -> None:
        bring_up_to_date(self.core.engine)
        unsafe = durability_problems(self.core.engine)
        if unsafe:
            log.warning(
                "PostgreSQL runs with %s: a crash of its machine can lose mail already"
                " acknowledged with 250",
                ", ".join(unsafe),
            )
        if settings.smarthost is None and "worker" in self.roles:
            log.warning(
                "no smarthost configured: outgoing mail is written to %s", settings.outgoing_dir
            )
        self._bind()
        try:
            self._start_children()
            asyncio.run(self._serve())
        finally:
            self._stop()
            for listener in self._listeners():
                listener.close()

    def _take_locks(self) -> list[ServeLock | ProcessLock]:
        """One service per SQLite database; one whoosh writer per deployment."""
        engine = self.core.engine
        held: list[ServeLock | ProcessLock] = []
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            serve = ServeLock(Path(engine.url.database))
            try:
                serve.acquire()
            except RuntimeError as exc:
                raise StartError(str(exc)) from None
            held.append(serve)
        if "indexer" in self.roles and self.core.settings.search_backend == "whoosh":
            writer = process_lock(engine, "whoosh-writer", process_label("indexer"))
            if not writer.acquire():
                who = writer.holder() or "another process"
                raise StartError(
                    f"the whoosh index has one writer and {who} is it; start this process"
                    " without the indexer role, or use ARSIP_SEARCH_BACKEND=postgres, which"
                    " any number of processes may index"
                )
            held.append(writer)
        return held

    def _serves_web(self) -> bool:
        return (
            self.web_app_factory is not None
            and bool(self.core.settings.web_port)
            and "web" in self.roles
        )

    def _bind(self) -> None:
        """Bind the intake's ports, the web UI's and the local command socket."""
        settings = self.core.settings
        try:
            if "intake" in self.roles:
                self._intake = bind_intake(settings)
            if self._serves_web():
                self._web = listen(settings.web_host, settings.web_port)
                self._local = localsocket.bind(settings.data_dir)
        except OSError:
            for listener in self._listeners():
                listener.close()
            raise

    def _listeners(self) -> list[socket.socket]:
        local = [self._local] if self._local is not None else []
        return [sock for sock, _protocol in self._intake] + self._web + local

    def _start_children(self) -> None:
        """Start the web and background children, forked before this process has a
        thread (a fork copies only the thread that calls it, and a lock another thread
        held would stay locked in the child for ever)."""
        self._preload()
        self.core.engine.dispose()  # no child inherits a pooled database connection
        # The collector would write to every object it scans, and so copy into each child
        # the pages the imports above left shared; objects made so far are kept for good.
        gc.freeze()
        if self._web:
            self._start_web()
        for roles in background_children(self.roles):
            self._start_child(
                "arsip-" + "+".join(sorted(roles)),
                run_background_process,
                (
                    self.core.settings,
                    os.getpid(),
                    roles,
                    self.extension_factories,
                    self._wake if "intake" in self.roles else None,
                    "intake" in self.roles,
                ),
            )
        # The web children hold the web and local sockets now; the intake's stay here.
        for listener in self._web + ([self._local] if self._local is not None else []):
            listener.close()
        self._web, self._local = [], None

    def _preload(self) -> None:
        """Import what the children run, so that they share it (see `START_METHOD`)."""
        if START_METHOD != "fork":
            return
        if self.roles & {"web", "indexer"}:
            self.core.search_module()
        if self._web:
            import waitress  # noqa: F401  (what serves the pages)

            assert self.web_app_factory is not None  # _serves_web checked
            self.web_app_factory(self.core)  # an app built and dropped imports every page

    def _start_child(
        self,
        name: str,
        target: Callable[..., None],
        args: tuple[Any, ...],
        keep: Sequence[Any] = (),
    ) -> None:
        inherited = [sock for sock in self._listeners() if sock not in keep]
        child = self._context.Process(
            target=_forked_child, args=(inherited, target, *args), name=name, daemon=True
        )
        child.start()
        self._children.append(child)

    def _start_web(self) -> None:
        settings = self.core.settings
        for number in range(1, settings.web_processes + 1):
            self._start_child(
                f"arsip-web-{number}",
                run_web_process,
                (
                    settings,
                    os.getpid(),
                    self._web,
                    self.web_app_factory,
                    self.extension_factories,
                    self._local,
                ),
                keep=[*self._web, self._local],
            )
        log.info(
            "web UI on http://%s:%d/ (%d processes)",
            settings.web_host,
            settings.web_port,
            settings.web_processes,
        )

    async def _serve(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        servers = await self._start_intake() if self._intake else []
        log.info("arsip is up (%s)", process_label(",".join(r for r in ROLES if r in self.roles)))
        watcher = asyncio.create_task(self._watch_children(stopping))
        await stopping.wait()
        watcher.cancel()
        log.info("stopping")
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    async def _start_intake(self) -> list[asyncio.AbstractServer]:
        # The spool flusher thread must get the interpreter back as soon as its commit
        # returns: every client in the batch is waiting on it, and the default 5 ms switch
        # interval would add up to that much to each acknowledgement.
        sys.setswitchinterval(SWITCH_INTERVAL)
        committer = GroupCommitter(self.core.spool, on_commit=self._wake.set)
        handler = IntakeHandler(self.core.settings, self.core.policy, committer)
        return await start_servers(self.core.settings, handler, self._intake)

    async def _watch_children(self, stopping: asyncio.Event) -> None:
        """Stop the service when a child dies: a service without its worker or web UI
        would look alive to its supervisor while doing nothing."""
        while True:
            await asyncio.sleep(CHILD_CHECK_SECONDS)
            for child in self._children:
                if child.exitcode is not None:
                    log.error("%s exited with status %s; stopping", child.name, child.exitcode)
                    self._died = child
                    stopping.set()
                    return

    def _stop(self) -> None:
        for child in self._children:
            if child.is_alive():
                child.terminate()
        for child in self._children:
            child.join(timeout=10)
