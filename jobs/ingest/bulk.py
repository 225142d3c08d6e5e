"""Bulk writes of number columns, for loads too large for records (25M synthetic events).

Each call stages a chunk of numpy columns in the database without one Python object per row,
then runs one ``INSERT ... SELECT`` that spells the text columns out in SQL (``'u' || user_n``)
and keeps the row path's ``ON CONFLICT`` rules, so a re-run stores nothing twice and the rows
equal what ``recall.sqlstore`` writes record by record:

- PostgreSQL: binary ``COPY`` (psycopg's ``cursor.copy``) into a temporary table, its rows
  packed by a numpy structured array (fixed-width numbers: no text formatting at all);
- SQLite: ``json_each`` over one JSON array of rows, which orjson writes straight from a numpy
  array. ``executemany`` would need a Python tuple of Python objects per row; Parquet would need
  a reader SQLite does not have.

Columns are int64 (SQL ``bigint``) or datetime64[us] (``timestamp``; SQLite gets SQLAlchemy's
text form of it, ``YYYY-MM-DD HH:MM:SS.ffffff``; times after 1970).

Into an empty table, ``indexes_deferred`` drops the non-unique indexes (and, on PostgreSQL, the
unique constraints) for the load and builds them again after it, as PostgreSQL's "Populating a
Database" advises: one sort per index costs far less than keeping indexes of 25M rows up to date
row by row (2.5x faster loads here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, Engine, text

STAGE = "bulk_stage"
_PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")  # PostgreSQL's binary timestamps count from it
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class BulkInsert:
    """``INSERT INTO table (columns' keys) SELECT columns' values FROM <staged> ORDER BY order_by
    <conflict>``: the values are SQL over the staged columns' names and bind parameters."""

    table: str
    columns: dict[str, str]
    order_by: str
    conflict: str

    def statement(self, source: str, conflicts: bool = True) -> str:
        conflict = self.conflict if conflicts else ""
        return (f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
                f"SELECT {', '.join(self.columns.values())} FROM {source} "
                f"WHERE true ORDER BY {self.order_by} {conflict}")  # WHERE: SQLite's upsert grammar


def insert_columns(connection: Connection, insert: BulkInsert, staged: dict[str, np.ndarray],
                   params: dict[str, Any] | None = None, conflicts: bool = True) -> int:
    """Stage the equally long ``staged`` columns and insert them; returns the rows inserted (or
    updated, for an upsert). ``conflicts=False``: without the ON CONFLICT clause (the unique
    constraints are lifted: ``indexes_deferred``). Runs in the caller's transaction."""
    if not len(next(iter(staged.values()))):
        return 0
    dialect = connection.dialect.name
    if dialect == "postgresql":
        _copy_to_stage(connection, staged)
        inserted = connection.execute(text(insert.statement(STAGE, conflicts)), params or {}).rowcount
        connection.exec_driver_sql(f"DROP TABLE {STAGE}")
        return inserted
    if dialect == "sqlite":
        return connection.execute(text(insert.statement(_json_source(staged), conflicts)),
                                  {**(params or {}), "bulk_rows": _json_rows(staged)}).rowcount
    raise ValueError(f"unsupported database dialect {dialect!r} (SQLite and PostgreSQL are)")


@contextmanager
def indexes_deferred(engine: Engine, table: str) -> Iterator[bool]:
    """Loads into an empty ``table`` run without its non-unique indexes, and on PostgreSQL
    without its unique constraints too, all made again afterwards (also when the load fails).

    Yields whether the unique constraints were lifted: the load must then insert without
    ON CONFLICT, and rows that repeat a key fail the load when the constraint comes back. A
    table that has rows keeps everything (readers may be using its indexes)."""
    with engine.begin() as connection:
        empty = connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first() is None
        indexes = _secondary_indexes(connection, table) if empty else []
        constraints = _unique_constraints(connection, table) if empty else []
        for name, _ in indexes:
            connection.exec_driver_sql(f'DROP INDEX "{name}"')
        for name, _ in constraints:
            connection.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    try:
        yield bool(constraints)
    finally:
        with engine.begin() as connection:
            for name, definition in constraints:
                connection.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for _, definition in indexes:
                connection.exec_driver_sql(definition)
            if connection.dialect.name == "postgresql" and empty:
                connection.exec_driver_sql(f"ANALYZE {table}")  # the planner's statistics of the new rows


def _secondary_indexes(connection: Connection, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the table's indexes that are neither unique nor primary."""
    if connection.dialect.name == "postgresql":
        query = ("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                 "WHERE x.indrelid = CAST(:table AS regclass) AND NOT x.indisunique AND NOT x.indisprimary")
    else:  # SQLite keeps no statement for the indexes behind UNIQUE and PRIMARY KEY
        query = ("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :table "
                 "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%'")
    return [(name, definition) for name, definition in connection.execute(text(query), {"table": table})]


def _unique_constraints(connection: Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's UNIQUE constraints on PostgreSQL; none on SQLite, whose
    constraints live in the table's own definition."""
    if connection.dialect.name != "postgresql":
        return []
    query = ("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
             "WHERE conrelid = CAST(:table AS regclass) AND contype = 'u'")
    return [(name, definition) for name, definition in connection.execute(text(query), {"table": table})]


def _copy_to_stage(connection: Connection, staged: dict[str, np.ndarray]) -> None:
    columns = ", ".join(f"{name} {'timestamp' if values.dtype.kind == 'M' else 'bigint'}"
                        for name, values in staged.items())
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {STAGE} ({columns}) ON COMMIT DROP")
    # A binary COPY row: field count, then each field's byte length and value, all big-endian.
    layout = [("fields", ">i2")]
    for i in range(len(staged)):
        layout += [(f"length{i}", ">i4"), (f"value{i}", ">i8")]
    rows = np.empty(len(next(iter(staged.values()))), dtype=np.dtype(layout))
    rows["fields"] = len(staged)
    for i, values in enumerate(staged.values()):
        rows[f"length{i}"] = 8
        rows[f"value{i}"] = (values - _PG_EPOCH).astype(np.int64) if values.dtype.kind == "M" else values
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {STAGE} ({', '.join(staged)}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(_COPY_HEADER)
        copy.write(rows.data)
        copy.write(_COPY_TRAILER)


def _json_source(staged: dict[str, np.ndarray]) -> str:
    fields = []
    for i, (name, values) in enumerate(staged.items()):
        value = f"(value ->> {i})"
        if values.dtype.kind == "M":  # microseconds since 1970 -> SQLAlchemy's SQLite DATETIME text
            value = (f"strftime('%Y-%m-%d %H:%M:%S', {value} / 1000000, 'unixepoch') "
                     f"|| printf('.%06d', {value} % 1000000)")
        fields.append(f"{value} AS {name}")
    return f"(SELECT {', '.join(fields)} FROM json_each(:bulk_rows)) AS {STAGE}"


def _json_rows(staged: dict[str, np.ndarray]) -> str:
    columns = [values.astype("datetime64[us]").astype(np.int64) if values.dtype.kind == "M"
               else values.astype(np.int64) for values in staged.values()]
    return orjson.dumps(np.stack(columns, axis=1), option=orjson.OPT_SERIALIZE_NUMPY).decode()
