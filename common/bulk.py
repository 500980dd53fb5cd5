"""Inserting many new rows of one model in one COPY, where ``bulk_create`` costs more to compile than to run.

``bulk_create`` builds one multi-row INSERT: every value of every row goes through the ORM's compiler, and
psycopg then merges a statement with thousands of placeholders (a plan of 61 steps: 14 ms, of which the
database's part is a fifth). COPY sends the rows as data with one constant statement: the values are still
prepared by each field (``get_db_prep_save``: JSON, arrays, decimals as the ORM writes them), but nothing is
compiled. For models whose primary key is set in Python (a UUID default) and with no ``pre_save`` logic
(``auto_now``): the rows need nothing back from the database. Runs in the caller's transaction; it is a
statement like any other in ``connection.queries`` when queries are logged (query-count tests count it).
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model


@cache
def _statement(model: type[Model]) -> tuple[str, tuple[Any, ...]]:
    fields = tuple(model._meta.concrete_fields)
    if any(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) for f in fields):
        raise TypeError(f"{model.__name__} has auto_now fields: use bulk_create")
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    return f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN", fields


def copy_insert[M: Model](objs: list[M]) -> list[M]:
    """Insert ``objs`` (new instances of one model, primary keys set) with COPY; returns them, saved."""
    if not objs:
        return objs
    sql, fields = _statement(type(objs[0]))
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the proxy: each value's preparation reads it
    with db.cursor() as cursor:
        logged = getattr(cursor, "debug_sql", None)  # Django's query log, when it is on (DEBUG, tests)
        with logged(sql) if logged is not None else nullcontext(), db.wrap_database_errors, \
                cursor.cursor.copy(sql) as copy:
            for obj in objs:
                copy.write_row([f.get_db_prep_save(getattr(obj, f.attname), db) for f in fields])
    for obj in objs:
        obj._state.adding, obj._state.db = False, db.alias
    return objs
