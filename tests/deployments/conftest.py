"""The real Prefect server, the served deployments and the runs they share (see tests/prefect_server.py)."""

from prefect_server import monitored_run, prefect_server, prepared_run, served, trained_run  # noqa: F401  (fixtures)
