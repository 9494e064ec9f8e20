"""Content checks: SpamAssassin's `spamd` and ClamAV's `clamd`, asked by the worker.

Both daemons are optional (`ARSIP_SPAMD`, `ARSIP_CLAMD`); unset, nothing is checked. They
are asked after the intake's 250, never before: a compliance archive keeps everything it
is sent, and a slow daemon must not make senders wait. What they say is a `Verdict`:
the archive stores and flags it, and a list decides with it whether to deliver, hold or
discard a post.
"""
