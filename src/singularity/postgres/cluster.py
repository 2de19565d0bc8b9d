"""Where each database lives and how each role reaches it, resolved from the settings."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from singularity.config import Settings
from singularity.postgres.embedded import ServerInfo
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.secrets import RolePasswords
from singularity.postgres.topology import Database, Role

__all__ = ["Cluster"]

_URL_SETTING = {
    Database.SINGULARITY: "database_url",
    Database.GENESIS: "genesis_database_url",
    Database.CENTRALCLOUD: "centralcloud_database_url",
    Database.NEXUS: "nexus_database_url",
    Database.SHARED_QUEUE: "shared_queue_db_url",
}


class Cluster:
    """Resolves admin and per-role endpoints for the five databases.

    The URL settings (and `DB_*`) name where a database is and who administers it; services log
    in to the same place as their own role, with the role's password when the server wants one.
    """

    def __init__(self, settings: Settings, embedded: ServerInfo | None = None) -> None:
        if settings.embedded and embedded is None:
            raise ValueError("the embedded server must be running to resolve its endpoints")
        self.settings = settings
        self._embedded = embedded
        self.passwords = RolePasswords(settings)

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    @property
    def instance(self) -> int:
        """Which Singularity instance this is (`SINGULARITY_INSTANCE`)."""
        return self.settings.singularity_instance

    def with_instance(self, instance: int) -> Cluster:
        """The same cluster, seen by Singularity instance `instance`."""
        settings = self.settings.model_copy(update={"singularity_instance": instance})
        return Cluster(settings, self._embedded)

    def singularity_database(self, instance: int) -> str:
        """The database of a Singularity instance: the base name for 1, `<base>_N` for N."""
        base = self._configured_name(Database.SINGULARITY)
        return base if instance == 1 else f"{base}_{instance}"

    def database_name(self, database: Database) -> str:
        """The real name of a database: its URL's, `NEXUS_DB`, or the prefixed default; for
        Singularity, this instance's."""
        if database is Database.SINGULARITY:
            return self.singularity_database(self.instance)
        return self._configured_name(database)

    def _configured_name(self, database: Database) -> str:
        url = getattr(self.settings, _URL_SETTING[database])
        if url is not None and not self.embedded:
            name = conninfo_to_dict(url.get_secret_value()).get("dbname")
            if name:
                return str(name)
        if database is Database.NEXUS and self.settings.nexus_db:
            return self.settings.nexus_db
        return self.settings.singularity_db_prefix + database.value

    def role_name(self, role: Role) -> str:
        return self.settings.singularity_db_prefix + role.value

    def admin(self, database: Database) -> Endpoint:
        """The administrator's endpoint for a database (bootstrap, migrations, status)."""
        name = self.database_name(database)
        if self._embedded is not None:
            return Endpoint(
                host=str(self._embedded.socket_dir),
                port=self._embedded.port,
                dbname=name,
                user="postgres",
            )
        s = self.settings
        defaults: dict[str, object] = {
            "host": s.db_host or "localhost",
            "port": s.db_port,
            "dbname": name,
            "user": s.db_user,
            "password": s.db_password.get_secret_value() if s.db_password else None,
        }
        if database is Database.SHARED_QUEUE and s.shared_queue_db_url is None:
            defaults.update(
                {
                    "host": s.shared_queue_host or defaults["host"],
                    "port": s.shared_queue_port or defaults["port"],
                    "user": s.shared_queue_user or defaults["user"],
                }
            )
            if s.shared_queue_password is not None:
                defaults["password"] = s.shared_queue_password.get_secret_value()
        url = getattr(s, _URL_SETTING[database])
        if url is None:
            return Endpoint.parse("", **defaults)
        return Endpoint.parse(url.get_secret_value(), **defaults).with_database(name)

    def maintenance(self, database: Database) -> Endpoint:
        """The admin endpoint on the `postgres` database of the server that hosts `database`."""
        return self.admin(database).with_database("postgres")

    def service(self, role: Role, database: Database) -> Endpoint:
        """How `role` logs in to `database`."""
        password = None if self.embedded else self.passwords.get(role)
        return self.admin(database).as_user(self.role_name(role), password)

    def servers(self) -> dict[tuple[str, int], list[Database]]:
        """The databases grouped by the server that hosts them."""
        grouped: dict[tuple[str, int], list[Database]] = {}
        for database in Database:
            grouped.setdefault(self.admin(database).server, []).append(database)
        return grouped
