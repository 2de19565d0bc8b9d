"""The access matrix, enforced by PostgreSQL: every cell is tried as the role itself.

Expected rights are written here from ARCHITECTURE.md's queue table, not read from the code
that grants them, so a wrong grant fails a test.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conftest import embedded_only
from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Database, Role

S, C, G, N, A = (
    Role.SINGULARITY,
    Role.CENTRALCLOUD,
    Role.GENESIS,
    Role.NEXUS,
    Role.CENTRALCLOUD_ANALYTICS,
)

# queue: (publishers, consumer), from ARCHITECTURE.md
MATRIX = {
    "llm_requests": ({S, G}, N),  # Genesis asks for the mutations of its evolution runs
    "llm_results": ({N}, S),
    "genesis_llm_results": ({N}, G),
    "approval_requests": ({S}, N),
    "approval_responses": ({N}, S),
    "question_requests": ({S}, N),
    "question_responses": ({N}, S),
    "job_requests": ({S}, G),
    "job_results": ({G}, S),
}
QUEUES = [*MATRIX, *(f"{q}_dlq" for q in MATRIX)]


def may_send(role: Role, queue: str) -> bool:
    if queue.endswith("_dlq"):
        return role == MATRIX[queue.removesuffix("_dlq")][1]  # its consumer dead-letters
    return role in MATRIX[queue][0]


def may_consume(role: Role, queue: str) -> bool:
    return not queue.endswith("_dlq") and role == MATRIX[queue][1]


def may_read_archive(role: Role, queue: str) -> bool:
    return role in (C, A) or may_consume(role, queue)


def may_prune(role: Role, queue: str) -> bool:
    return role == C


def cells(rule: object) -> list[tuple[Role, str, bool]]:
    return [(role, queue, rule(role, queue)) for role in Role for queue in QUEUES]  # type: ignore[operator]


def label(cell: tuple[Role, str, bool]) -> str:
    role, queue, allowed = cell
    return f"{role.value}-{queue}-{'allowed' if allowed else 'refused'}"


@pytest.fixture(scope="module")
def as_role(cluster: Cluster) -> Iterator[dict[Role, psycopg.Connection]]:
    """One connection to the bus per role, logged in as that role."""
    conns = {
        role: psycopg.connect(cluster.service(role, Database.SHARED_QUEUE).conninfo())
        for role in Role
    }
    yield conns
    for conn in conns.values():
        conn.close()


def attempt(conn: psycopg.Connection, query: str, params: tuple[object, ...]) -> bool:
    """True if PostgreSQL lets the statement run (nothing is kept either way)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(query, params)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


@pytest.mark.parametrize("cell", cells(may_send), ids=label)
def test_send(as_role: dict[Role, psycopg.Connection], cell: tuple[Role, str, bool]) -> None:
    role, queue, allowed = cell
    sent = attempt(as_role[role], "SELECT pgmq.send(%s, %s::jsonb)", (queue, '{"id": "x"}'))
    assert sent is allowed


@pytest.mark.parametrize("cell", cells(may_consume), ids=label)
def test_read(as_role: dict[Role, psycopg.Connection], cell: tuple[Role, str, bool]) -> None:
    role, queue, allowed = cell
    assert attempt(as_role[role], "SELECT * FROM pgmq.read(%s, 0, 1)", (queue,)) is allowed


@pytest.mark.parametrize("cell", cells(may_consume), ids=label)
def test_archive(as_role: dict[Role, psycopg.Connection], cell: tuple[Role, str, bool]) -> None:
    role, queue, allowed = cell
    query = "SELECT * FROM pgmq.archive(%s, ARRAY[1]::bigint[])"
    assert attempt(as_role[role], query, (queue,)) is allowed


@pytest.mark.parametrize("cell", cells(may_read_archive), ids=label)
def test_select_archive(
    as_role: dict[Role, psycopg.Connection], cell: tuple[Role, str, bool]
) -> None:
    role, queue, allowed = cell
    assert attempt(as_role[role], f"SELECT count(*) FROM pgmq.a_{queue}", ()) is allowed


@pytest.mark.parametrize("cell", cells(may_prune), ids=label)
def test_prune_archive(
    as_role: dict[Role, psycopg.Connection], cell: tuple[Role, str, bool]
) -> None:
    role, queue, allowed = cell
    query = f"DELETE FROM pgmq.a_{queue} WHERE archived_at < now() - interval '90 days'"
    assert attempt(as_role[role], query, ()) is allowed


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_only_consumers_may_read_messages_in_a_queue_table(
    as_role: dict[Role, psycopg.Connection], role: Role
) -> None:
    # A publisher sees only msg_id (pgmq.send returns it); CentralCloud observes the bus.
    for queue in MATRIX:
        allowed = may_consume(role, queue) or role == C
        query = f"SELECT message FROM pgmq.q_{queue} LIMIT 1"
        assert attempt(as_role[role], query, ()) is allowed


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_no_service_role_can_create_queues(
    as_role: dict[Role, psycopg.Connection], role: Role
) -> None:
    assert attempt(as_role[role], "SELECT pgmq.create('intruder')", ()) is False


CONNECT = {
    Database.SINGULARITY: {S},
    Database.CENTRALCLOUD: {C},
    Database.GENESIS: {G},
    Database.NEXUS: {N},
    Database.SHARED_QUEUE: {S, C, G, N, A},
}


@pytest.mark.parametrize(
    "cell",
    [(role, db, role in CONNECT[db]) for role in Role for db in Database],
    ids=lambda c: f"{c[0].value}-{c[1].value}-{'allowed' if c[2] else 'refused'}",
)
def test_connect(cluster: Cluster, cell: tuple[Role, Database, bool]) -> None:
    role, database, allowed = cell
    try:
        psycopg.connect(cluster.service(role, database).conninfo()).close()
    except psycopg.OperationalError as exc:
        assert "permission denied for database" in str(exc)
        connected = False
    else:
        connected = True
    assert connected is allowed


@embedded_only  # a configured server's own databases are its administrator's to close
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("server_database", ["postgres", "template1"])
def test_no_service_role_may_connect_to_the_servers_own_databases(
    cluster: Cluster, role: Role, server_database: str
) -> None:
    endpoint = cluster.service(role, Database.NEXUS).with_database(server_database)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(endpoint.conninfo()).close()


def test_a_service_role_owns_its_own_database_objects(cluster: Cluster) -> None:
    with psycopg.connect(cluster.service(N, Database.NEXUS).conninfo()) as conn:
        conn.execute("CREATE TABLE scratch_probe (id int)")  # its own schema: allowed
        conn.execute("DROP TABLE scratch_probe")
    bus = cluster.service(S, Database.SHARED_QUEUE)
    with (
        psycopg.connect(bus.conninfo()) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE TABLE public.scratch_probe (id int)")
