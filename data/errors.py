"""The one base class of the errors a user causes and can fix, in the lowest layer so every package above may
raise it (`model/` imports nothing of ours and raises none)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for or where (a setting, a folder in use, data too small, a disk full):
    the message says what was wrong, the value, and what to do, so the command lines print it alone, without a
    traceback (flows/cli.py). A subclass keeps its builtin base too (`class ShardError(UserError, ValueError)`),
    so callers that catch the builtin still do."""
