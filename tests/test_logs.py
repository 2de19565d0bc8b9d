"""Log lines: structlog's and the libraries' own, in one form (JSON when asked)."""

from __future__ import annotations

import io
import json
import logging

import structlog

from singularity.logs import configure_logging


def test_json_logs_render_library_warnings_as_json_too() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        structlog.get_logger("singularity.test").info("service_started", queue="jobs")
        logging.getLogger("psycopg.pool").warning("error connecting in %r: %s", "pool-1", "boom")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logging.getLogger("psycopg").exception("failed")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        configure_logging("warning")
    assert lines[0]["event"] == "service_started" and lines[0]["queue"] == "jobs"
    assert lines[1] == {
        "event": "error connecting in 'pool-1': boom",
        "level": "warning",
        "logger": "psycopg.pool",
        "timestamp": lines[1]["timestamp"],
    }
    assert lines[2]["level"] == "error"
    assert "ZeroDivisionError: division by zero" in lines[2]["exception"]


def test_info_of_libraries_stays_quiet_at_info() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    try:
        logging.getLogger("httpx").info("HTTP Request: GET /")
        logging.getLogger("psycopg.pool").warning("pool is slow")
    finally:
        configure_logging("warning")
    text = out.getvalue()
    assert "HTTP Request" not in text
    assert "pool is slow" in text and "[psycopg.pool]" in text
