"""Prefect tasks, thin over plain functions: prepare.py (fetch, tokenize, shard), train.py (one task per stage),
caching.py (content-hash cache keys, persisted results), ui_artifacts.py and ui_publish.py (what the Prefect UI
shows)."""
