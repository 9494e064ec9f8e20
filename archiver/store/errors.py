"""The store's failures, as types callers can tell apart."""

from __future__ import annotations


class BlobMissingError(LookupError):
    """No blob with that sha256 is in the store."""


class BlobCorruptError(ValueError):
    """A blob's bytes no longer hash to its name (or a sealed blob fails to authenticate)."""


class BlobKeyError(RuntimeError):
    """A sealed blob cannot be opened: the store has no key, or not the one it was sealed
    under. Not damage, so callers can tell the operator to fix the configuration."""
