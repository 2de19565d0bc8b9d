"""Passwords of the service roles on an external server.

A password set in the environment (`SINGULARITY_ROLE_PASSWORD_<ROLE>`) wins; otherwise `db init`
generates one and keeps it in `$SINGULARITY_HOME/secrets/db-roles.json` (mode 0600), where the
services on the same machine find it. On several machines, give each service its own variable.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from singularity.config import Settings
from singularity.postgres.topology import Role
from singularity.private import open_private, private_dir

__all__ = ["RolePasswords"]


class RolePasswords:
    """Reads, and on first need creates, the service roles' passwords."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.path: Path = settings.singularity_home / "secrets" / "db-roles.json"

    def get(self, role: Role) -> str | None:
        """The role's password, or None when none is configured or stored."""
        configured = self._settings.role_password(role.value)
        if configured is not None:
            return configured.get_secret_value()
        return self._stored().get(self._key(role))

    def ensure(self, role: Role) -> str:
        """The role's password, generating and storing one if there is none yet."""
        existing = self.get(role)
        if existing is not None:
            return existing
        stored = self._stored()
        stored[self._key(role)] = secrets.token_urlsafe(24)
        private_dir(self.path.parent, within=self._settings.singularity_home)
        with os.fdopen(open_private(self.path), "w") as handle:
            json.dump(stored, handle, indent=2)
        return stored[self._key(role)]

    def _key(self, role: Role) -> str:
        return self._settings.singularity_db_prefix + role.value

    def _stored(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError):
            return {}
