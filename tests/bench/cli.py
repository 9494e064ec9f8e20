"""Command-line benchmark: how long `arsip search`, `show` and `stats` take, whole.

Each command is run as an operator runs it, as a new process, from start to exit, on an
existing archive, in two ways in the same run:

- with `arsip serve` running on the archive: the command asks the service over its local
  socket (the usual case on a machine that runs Arsip);
- with no service: the command opens the archive itself (the baseline; also what a
  command does on a copy of an archive, or with the service stopped).

It prints the median and p95 wall time and the median CPU time (user + system of the
command's process) per command and way, and the ratio of the two ways, then one JSON
line. The archive is changed only by the audit entries the commands write.

    .venv/bin/python tests/bench/cli.py --data-dir DIR/data [--runs N]

where DIR is a folder kept by `tests/bench/search.py --keep DIR`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARSIP = str(Path(sys.executable).with_name("arsip"))


def web_bench():
    """tests/bench/web.py, for its `server` (a module named `web` would be the web UI)."""
    spec = importlib.util.spec_from_file_location("bench_web", ROOT / "tests/bench/web.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def sample_ids(settings_env: dict[str, str]) -> tuple[str, str]:
    """A Message-ID and a sender address from the archive, for `show` and `from:`."""
    from sqlalchemy import create_engine, text

    from archiver.config import load_settings

    engine = create_engine(load_settings(environ=settings_env).database_url)
    try:
        with engine.connect() as db:
            message_id, sender = db.execute(
                text("SELECT message_id, from_address FROM messages ORDER BY id LIMIT 1 OFFSET 100")
            ).one()
    finally:
        engine.dispose()
    return message_id, sender


def time_command(args: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median and p95 wall time and median CPU time of `runs` runs of `arsip ARGS`, in ms."""
    return time_commands([[ARSIP, *args]] * runs, env)


def time_commands(commands: list[list[str]], env: dict[str, str]) -> dict[str, float]:
    """Median and p95 wall time and median CPU time of running each command once, in ms:
    whole processes, as a person at a shell runs them (any program, not only `arsip`)."""
    walls, cpus = [], []
    for command in commands:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        walls.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    walls.sort()
    return {
        "p50": statistics.median(walls),
        "p95": walls[min(len(walls) - 1, int(len(walls) * 0.95))],
        "cpu": statistics.median(cpus),
    }


def measure(
    data_dir: Path, runs: int, settings_env: dict[str, str] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Per command, its timings with `arsip serve` running and without a service
    (`settings_env`: more `ARSIP_*` settings, such as a PostgreSQL database's URL)."""
    settings_env = {"ARSIP_DATA_DIR": str(data_dir), **(settings_env or {})}
    message_id, sender = sample_ids(settings_env)
    commands = {
        "search word": ["search", "meeting"],
        "search from:": ["search", f"from:{sender}"],
        "show": ["show", message_id],
        "stats": ["stats"],
    }
    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in commands}
    web = web_bench()
    log = data_dir.parent / "bench-cli-serve.log"
    with web.server(data_dir, log, 2, settings_env) as running:
        _pid, _port, env = running
        while not (data_dir / "arsip.sock").exists():
            time.sleep(0.1)
        for name, args in commands.items():
            print(f"with the service: {name} ...", file=sys.stderr)
            results[name]["service"] = time_command(args, env, runs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSIP_")}
    env.update(settings_env)
    for name, args in commands.items():
        print(f"without a service: {name} ...", file=sys.stderr)
        results[name]["alone"] = time_command(args, env, runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    results = measure(options.data_dir.resolve(), options.runs)
    print(
        f"{'command':14} {'service p50/p95 ms':>20} {'cpu':>6} {'alone p50/p95 ms':>18} "
        f"{'cpu':>6} {'alone/service':>14}"
    )
    for name, ways in results.items():
        served, alone = ways["service"], ways["alone"]
        print(
            f"{name:14} {served['p50']:9.0f} / {served['p95']:<8.0f} {served['cpu']:6.0f} "
            f"{alone['p50']:8.0f} / {alone['p95']:<7.0f} {alone['cpu']:6.0f} "
            f"{alone['p50'] / served['p50']:13.1f}x"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({"runs": options.runs, "results": results}))


if __name__ == "__main__":
    main()
