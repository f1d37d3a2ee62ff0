"""Shared test machinery: real servers and the runs made on them, loaded as plugins by tests/conftest.py."""
