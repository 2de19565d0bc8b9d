"""Errors meant for the user: each carries one line that says what is wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "MissingPrivilege",
    "NotFound",
    "SingularityError",
    "UsageError",
]


class SingularityError(Exception):
    """A failure the user can act on; `str()` is the whole message."""

    exit_code = 1


class ConfigError(SingularityError):
    """A setting has a value the platform cannot use."""


class UsageError(SingularityError):
    """A command was given input it cannot accept."""

    exit_code = 2


class DatabaseUnavailable(SingularityError):
    """A database cannot be reached."""


class MissingPrivilege(SingularityError):
    """The configured database user lacks a privilege the bootstrap needs."""


class NotFound(SingularityError):
    """A named thing (queue, database, service) does not exist."""
