"""The reliability figures for the README: run every fault scenario, print one table.

    .venv/bin/python tests/reliability/report.py

Sizes of the crash scenario come from its environment knobs (ARSIP_CRASH_MESSAGES,
ARSIP_CRASH_KILLS, ARSIP_CRASH_SESSIONS, ARSIP_CRASH_SEED); a scenario whose machinery is missing
here (PostgreSQL binaries, a tmpfs mount) prints a row that says it was skipped. The last
line is the same figures as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.faults import SCENARIOS, Row, Scenario

COLUMNS = {
    "scenario": "scenario",
    "faults": "faults injected",
    "sent": "messages sent",
    "acknowledged": "acknowledged (250)",
    "archived": "archived",
    "lost": "lost",
    "duplicated": "duplicated",
    "list_posts": "list posts accepted",
    "deliveries_expected": "deliveries expected",
    "deliveries_made": "deliveries made",
    "duplicate_deliveries": "duplicate deliveries",
}


def run(scenarios: list[Scenario], workdir: Path) -> list[Row]:
    """Run each scenario in a directory of its own; returns their rows in order."""
    rows = []
    for number, scenario in enumerate(scenarios):
        rows.append(scenario(workdir / f"{number}-{scenario.__name__}"))
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table, one row a scenario, notes underneath."""
    names = list(COLUMNS)
    header = "| " + " | ".join(COLUMNS[name] for name in names) + " |"
    rule = "|" + "|".join("---" if name == "scenario" else "---:" for name in names) + "|"
    lines = [header, rule]
    for row in rows:
        values = asdict(row)
        lines.append("| " + " | ".join(str(values[name]) for name in names) + " |")
    for row in rows:
        if row.notes:
            lines.append(f"\n{row.scenario}: {row.notes}")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="arsip-reliability-") as directory:
        rows = run(SCENARIOS, Path(directory))
    print(table(rows))
    print(json.dumps([{f.name: getattr(row, f.name) for f in fields(row)} for row in rows]))
    return 1 if any(row.lost for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
