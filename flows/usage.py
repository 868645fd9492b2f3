"""The error of a command's arguments that parse but cannot work: two options that do not go
together, a range that ends before it starts. `flows.cli.main` prints it as one
`dangol <command>: error: ...` line and exits 2."""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments that parse one by one but cannot work as given; the message says why."""
