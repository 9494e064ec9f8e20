"""Productions: archived mail written out as a review platform loads it (eDiscovery).

`archiver.production.run.produce` writes one production of any ordered set of messages;
`arsip subject export` (`archiver.production.subject_cli`) and a case's export are thin
callers of it.
"""
