"""Retention policies, legal holds and the sweep that deletes what has run out."""
