"""Where each database is and who logs in, resolved from the settings (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from singularity.config import Settings, load_settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.embedded import ServerInfo
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role

pytestmark = pytest.mark.usefixtures("no_settings_env")


def external(tmp_path: Path, **values: object) -> Cluster:
    settings: Settings = load_settings(_env_file=None, singularity_home=tmp_path, **values)
    return Cluster(settings)


def test_db_variables_are_the_default_for_every_database(tmp_path: Path) -> None:
    cluster = external(
        tmp_path, db_host="db.example", db_port=6543, db_user="admin", db_password="pw"
    )
    for database in Database:
        endpoint = cluster.admin(database)
        assert (endpoint.host, endpoint.port, endpoint.user, endpoint.password) == (
            "db.example",
            6543,
            "admin",
            "pw",
        )
        assert endpoint.dbname == database.value


def test_a_database_url_overrides_its_database_only(tmp_path: Path) -> None:
    cluster = external(
        tmp_path,
        db_host="db.example",
        database_url="postgresql://agents:secret@other.example:5433/agents_db?sslmode=require",
    )
    singularity = cluster.admin(Database.SINGULARITY)
    assert (singularity.host, singularity.port, singularity.dbname) == (
        "other.example",
        5433,
        "agents_db",
    )
    assert (singularity.user, singularity.password) == ("agents", "secret")
    assert ("sslmode", "require") in singularity.options
    assert cluster.admin(Database.GENESIS).host == "db.example"


def test_nexus_db_names_the_nexus_database(tmp_path: Path) -> None:
    assert external(tmp_path, db_host="h", nexus_db="hitl").database_name(Database.NEXUS) == "hitl"
    with_url = external(
        tmp_path, db_host="h", nexus_db="hitl", nexus_database_url="postgresql://h/from_url"
    )
    assert with_url.database_name(Database.NEXUS) == "from_url"


def test_the_shared_queue_url_wins_over_its_parts(tmp_path: Path) -> None:
    parts = {
        "shared_queue_host": "bus.example",
        "shared_queue_port": 7000,
        "shared_queue_user": "busadmin",
        "shared_queue_password": "bpw",
    }
    by_parts = external(tmp_path, db_host="db.example", **parts).admin(Database.SHARED_QUEUE)
    assert (by_parts.host, by_parts.port, by_parts.user, by_parts.password) == (
        "bus.example",
        7000,
        "busadmin",
        "bpw",
    )
    by_url = external(
        tmp_path,
        db_host="db.example",
        shared_queue_db_url="postgresql://u@url.example/bus",
        **parts,
    ).admin(Database.SHARED_QUEUE)
    assert (by_url.host, by_url.dbname, by_url.user) == ("url.example", "bus", "u")


def test_services_log_in_as_their_role_with_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINGULARITY_ROLE_PASSWORD_GENESIS", "g-secret")
    cluster = external(tmp_path, db_host="db.example", db_user="admin", db_password="pw")
    genesis = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    assert (genesis.user, genesis.password, genesis.dbname) == (
        "genesis",
        "g-secret",
        "shared_queue",
    )
    # Without a configured password, db init generates one and stores it for this home.
    stored = cluster.passwords.ensure(Role.NEXUS)
    assert cluster.service(Role.NEXUS, Database.NEXUS).password == stored
    assert (cluster.passwords.path.stat().st_mode & 0o777) == 0o600


def test_a_prefix_applies_to_every_database_and_role(tmp_path: Path) -> None:
    cluster = external(tmp_path, db_host="h", singularity_db_prefix="staging_")
    assert cluster.database_name(Database.SHARED_QUEUE) == "staging_shared_queue"
    assert cluster.role_name(Role.CENTRALCLOUD_ANALYTICS) == "staging_centralcloud_analytics"


def test_the_embedded_server_is_reached_through_its_socket(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, singularity_home=tmp_path)
    cluster = Cluster(settings, ServerInfo(pid=1, socket_dir=tmp_path / "pgdata", port=5432))
    nexus = cluster.admin(Database.NEXUS)
    assert nexus.url() == f"postgresql://postgres@/nexus?host={tmp_path}/pgdata&port=5432"
    assert cluster.service(Role.NEXUS, Database.NEXUS).password is None


def test_endpoint_urls_quote_and_hide_passwords() -> None:
    endpoint = Endpoint(host="db.example", port=5432, dbname="nexus", user="a@b", password="p:w/d")
    assert endpoint.url() == "postgresql://a%40b:p%3Aw%2Fd@db.example:5432/nexus"
    assert str(endpoint) == "postgresql://a%40b:****@db.example:5432/nexus"
    assert Endpoint.parse(endpoint.url(), host="x", port=1, dbname="y", user="z") == endpoint
