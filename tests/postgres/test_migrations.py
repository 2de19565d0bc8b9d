"""The nexus tables are the design's, column for column, and its example queries run."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from singularity.postgres.cluster import Cluster
from singularity.postgres.migrations import head_revision
from singularity.postgres.topology import Database, Role

DESIGN_COLUMNS = {
    "approval_requests": [
        ("id", "uuid", "NO", None),
        ("file_path", "text", "NO", None),
        ("diff", "text", "NO", None),
        ("description", "text", "YES", None),
        ("agent_id", "text", "NO", None),
        ("timestamp", "timestamp without time zone", "YES", "now()"),
        ("approved", "boolean", "YES", None),
        ("approved_at", "timestamp without time zone", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
    ],
    "question_requests": [
        ("id", "uuid", "NO", None),
        ("question", "text", "NO", None),
        ("context", "jsonb", "YES", None),
        ("agent_id", "text", "NO", None),
        ("timestamp", "timestamp without time zone", "YES", "now()"),
        ("response", "text", "YES", None),
        ("response_at", "timestamp without time zone", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
    ],
    "hitl_metrics": [
        ("id", "integer", "NO", "nextval('hitl_metrics_id_seq'::regclass)"),
        ("request_type", "character varying", "NO", None),
        ("request_id", "uuid", "NO", None),
        ("response_time_ms", "integer", "YES", None),
        ("user_id", "text", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
    ],
}

# The example queries of the design's DATABASE_SETUP.md, verbatim.
DESIGN_QUERIES = [
    "SELECT * FROM approval_requests WHERE approved = true ORDER BY approved_at DESC;",
    "SELECT * FROM approval_requests WHERE approved IS NULL ORDER BY timestamp DESC;",
    """SELECT agent_id, COUNT(*) as total, SUM(CASE WHEN approved THEN 1 ELSE 0 END) as approved
FROM approval_requests
GROUP BY agent_id;""",
    "SELECT * FROM question_requests WHERE response IS NOT NULL ORDER BY response_at DESC;",
    "SELECT * FROM question_requests WHERE response IS NULL ORDER BY timestamp DESC;",
    """SELECT question, COUNT(*) FROM question_requests
WHERE agent_id = 'architect-agent'
GROUP BY question;""",
    """SELECT request_type, AVG(response_time_ms) as avg_ms, COUNT(*) as total
FROM hitl_metrics
GROUP BY request_type;""",
    """SELECT request_type, response_time_ms, created_at
FROM hitl_metrics
ORDER BY response_time_ms DESC
LIMIT 10;""",
    "SELECT COUNT(*) FROM approval_requests;",
    "SELECT json_agg(row_to_json(t)) FROM approval_requests t;",
]


@pytest.fixture(scope="module")
def nexus(cluster: Cluster) -> psycopg.Connection:
    conn = psycopg.connect(cluster.service(Role.NEXUS, Database.NEXUS).conninfo(), autocommit=True)
    yield conn
    conn.close()


@pytest.mark.parametrize("table", list(DESIGN_COLUMNS))
def test_columns_are_exactly_the_designs(nexus: psycopg.Connection, table: str) -> None:
    rows = nexus.execute(
        "SELECT column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    assert rows == DESIGN_COLUMNS[table]


def test_the_designs_indexes_exist(nexus: psycopg.Connection) -> None:
    names = {
        r[0] for r in nexus.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    }
    assert {
        "idx_approval_requests_agent_id",
        "idx_approval_requests_timestamp",
        "idx_question_requests_agent_id",
        "idx_question_requests_timestamp",
    } <= names


def test_the_designs_example_queries_run_unchanged(nexus: psycopg.Connection) -> None:
    approval, question = uuid.uuid4(), uuid.uuid4()
    with nexus.transaction(force_rollback=True):
        nexus.execute(
            "INSERT INTO approval_requests (id, file_path, diff, description, agent_id, approved,"
            " approved_at) VALUES (%s, 'lib/a.py', '--- a\n+++ b', 'fix', 'self-improving-agent',"
            " true, NOW())",
            (approval,),
        )
        nexus.execute(
            "INSERT INTO question_requests (id, question, context, agent_id) "
            "VALUES (%s, 'Which database?', '{\"repo\": \"x\"}', 'architect-agent')",
            (question,),
        )
        nexus.execute(
            "INSERT INTO hitl_metrics (request_type, request_id, response_time_ms) "
            "VALUES ('approval', %s, 4200)",
            (approval,),
        )
        results = [nexus.execute(query).fetchall() for query in DESIGN_QUERIES]
    # Other tests' approvals may share the table: look for this test's rows among them.
    assert approval in {row[0] for row in results[0]}
    assert ("self-improving-agent", 1, 1) in results[2]
    assert ("Which database?", 1) in results[5]
    assert "approval" in {row[0] for row in results[6]}


def test_every_database_is_at_its_head(cluster: Cluster) -> None:
    for database in Database:
        with psycopg.connect(cluster.admin(database).conninfo()) as conn:
            try:
                current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                current = None
        head = head_revision(database)
        assert (current[0] if current else None) == head
    assert head_revision(Database.NEXUS) == "0003_fleet_tasks"
    assert head_revision(Database.SINGULARITY) == "0004_task_events_outbox"
