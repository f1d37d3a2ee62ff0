"""The real Prefect server and the demo run whose artifacts the monitor tests read (see tests/prefect_server.py)."""

from prefect_server import monitored_run, prefect_server, prepared_run, served  # noqa: F401  (fixtures)
