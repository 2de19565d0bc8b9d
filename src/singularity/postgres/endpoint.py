"""A connection target: one database on one server, as one user."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["Endpoint"]

# A peer that vanished (a host cut off from the network, a machine that died) is noticed in
# about 30 s on both ends of a TCP connection instead of the kernel's default two hours:
# the client's libpq gives up on the server, and the server, told by `options`, ends the
# session, rolling back its transaction and releasing the row locks it held (a message a
# worker was archiving, say), which other workers would otherwise skip until then. Unix
# sockets ignore all of it. A URL's own values win.
_CLIENT_KEEPALIVE = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",  # ms: data sent but never acknowledged
}
_SERVER_KEEPALIVE = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=30000"
)


@dataclass(frozen=True)
class Endpoint:
    """Everything libpq needs; `host` may be a Unix socket directory."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = None
    options: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def parse(cls, url: str, **defaults: object) -> Endpoint:
        """Read a libpq URL or key=value string; missing parts come from `defaults`."""
        parts = {k: v for k, v in conninfo_to_dict(url).items() if v not in (None, "")}
        known = {"host", "port", "dbname", "user", "password"}
        merged = {**defaults, **{k: v for k, v in parts.items() if k in known}}
        options = tuple(sorted((k, str(v)) for k, v in parts.items() if k not in known))
        return cls(
            host=str(merged["host"]),
            port=int(str(merged["port"])),
            dbname=str(merged["dbname"]),
            user=str(merged["user"]),
            password=str(merged["password"]) if merged.get("password") else None,
            options=options,
        )

    @property
    def server(self) -> tuple[str, int]:
        """Identifies the PostgreSQL server (roles are per server, databases per server)."""
        return (self.host, self.port)

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def with_database(self, dbname: str) -> Endpoint:
        return replace(self, dbname=dbname)

    def as_user(self, user: str, password: str | None) -> Endpoint:
        return replace(self, user=user, password=password)

    def conninfo(self, **extra: object) -> str:
        """A libpq key=value string (psycopg's input)."""
        params: dict[str, object] = dict(_CLIENT_KEEPALIVE)
        params.update(self.options)
        params.update(extra)
        params["options"] = f"{_SERVER_KEEPALIVE} {params.get('options') or ''}".strip()
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password,
            **params,
        )

    def url(self, *, hide_password: bool = False) -> str:
        """A libpq URL, e.g. for `psql "$(singularity db url nexus)"`."""
        user = quote(self.user, safe="")
        if self.password:
            user += ":" + ("****" if hide_password else quote(self.password, safe=""))
        query = dict(self.options)
        if self.is_socket:
            query = {"host": self.host, "port": str(self.port), **query}
            netloc = f"{user}@"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{user}@{host}:{self.port}"
        suffix = f"?{urlencode(query, safe='/')}" if query else ""
        return f"postgresql://{netloc}/{quote(self.dbname, safe='')}{suffix}"

    def __str__(self) -> str:
        return self.url(hide_password=True)
