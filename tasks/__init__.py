"""Prefect tasks: thin wrappers that add a name, a content-hash cache key and retries to plain functions."""
