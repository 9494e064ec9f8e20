"""`arsip subject ...`: a data subject's requests, access (`export`, a production) and
erasure (`erase`, `requests`), in one group whose commands live beside what they do."""

from __future__ import annotations

import click

from archiver.erasure.cli import subject_erase, subject_requests
from archiver.production.subject_cli import export


@click.group(name="subject")
def subject() -> None:
    """Data subjects' requests: every message about one address, out or erased."""


subject.add_command(export)
subject.add_command(subject_erase)
subject.add_command(subject_requests)
