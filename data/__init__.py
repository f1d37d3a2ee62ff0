"""Data sources, tokenization and the shard format. Plain functions: no Prefect, no model code."""
