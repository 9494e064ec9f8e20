"""Arsip core: intake, store, archive, search, retention."""
