"""Row helpers shared by the database and the copy tool: conversion and upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.dml import Insert

from singularity.genesis.evolution.schema import metadata_store
from singularity.genesis.evolution.types import Program

__all__ = ["insert_for", "program_from_row", "program_values", "put_metadata"]


def program_values(program: Program) -> dict[str, Any]:
    """The column values of a program."""
    return program.model_dump()


def program_from_row(row: RowMapping) -> Program:
    """A program read back from `programs`."""
    return Program.model_validate(dict(row))


def insert_for(connection: Connection, table: Table) -> Insert:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL have it)."""
    module = postgresql if connection.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def put_metadata(connection: Connection, key: str, value: Any) -> None:
    """Set one key of `metadata_store`."""
    statement = insert_for(connection, metadata_store).values(key=key, value=value)
    connection.execute(
        statement.on_conflict_do_update(index_elements=["key"], set_={"value": value})
    )
