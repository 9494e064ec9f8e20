"""A deployment of several `arsip serve --role ...` processes on one PostgreSQL database
and one shared data directory, as the README's "Running on several machines" describes.

Each process gets the same settings but ports of its own; every process is an `arsip
serve` the test started, stopped (or killed) by its PID.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.faults import alive
from tests.support import RunningService, children_of, free_ports, service_env


@dataclass
class Deployment:
    """The processes of one deployment, by name."""

    workdir: Path
    database_url: str
    extra: dict[str, str] = field(default_factory=dict)
    processes: dict[str, RunningService] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One set of settings; each process only gets intake ports of its own.
        self.env = service_env(self.workdir / "var", self.database_url, **self.extra)

    def start(self, name: str, roles: str) -> RunningService:
        """Start `arsip serve --role roles` as process `name`."""
        smtp_port, lmtp_port = free_ports(2)
        env = {**self.env, "ARSIP_SMTP_PORT": str(smtp_port), "ARSIP_LMTP_PORT": str(lmtp_port)}
        service = RunningService(env, self.workdir / f"{name}.log", roles=roles)
        self.processes[name] = service
        return service.start()

    def kill(self, name: str) -> list[int]:
        """SIGKILL process `name` and the children doing its work, as a machine that
        loses power would; returns the PIDs killed."""
        service = self.processes[name]
        assert service.process is not None
        pids = [*children_of(service.process.pid), service.process.pid]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        service.process.wait()
        service.process = None
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        return pids

    def log(self, name: str) -> str:
        return self.processes[name].log_path.read_text(errors="replace")

    def any(self) -> RunningService:
        """A process to look at the shared database through."""
        return next(iter(self.processes.values()))

    def close(self) -> None:
        for service in self.processes.values():
            service.close()


def drained(deployment: Deployment, timeout: float) -> dict[str, int]:
    """Wait until spool and index queue are empty; returns the stats."""
    service = deployment.any()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        figures = service.stats()
        if figures["spool_pending"] == 0 and figures["index_pending"] == 0:
            return figures
        time.sleep(0.25)
    raise AssertionError(f"the deployment did not drain: {service.stats()}")
