"""Full-text search: query language, backends, indexer."""
