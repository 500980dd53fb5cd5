"""Inserting new rows of one model where the ORM's insert costs more to compile than to run.

``bulk_create`` (and ``objects.create``) compile an INSERT per call: every value of every row goes through the
ORM's compiler, and psycopg then merges a statement with a placeholder per value (a plan of 61 steps: 14 ms,
of which the database's part is a fifth; one plan row: 0.7 ms of CPU, against 0.4 ms here). Both helpers here
write a statement once per model (and row count) and prepare each value as the ORM does (``pre_save``, so
``auto_now_add`` is set, then ``get_db_prep_save``: JSON, arrays, decimals as the ORM writes them):

- ``copy_insert`` sends the rows with COPY and reads nothing back; up to ``FEW_ROWS`` rows, one INSERT
  instead, prepared and planned once per connection (``common.prepared``): COPY's own exchange and setup
  cost Postgres more than the rows do (one plan row, one audit entry: 0.5-0.6 ms against ~0.1 ms). A primary
  key the database assigns (an ``AutoField``) is left to it and stays None on the instances: use it where
  nothing reads their ids.
- ``insert_returning`` sends one INSERT ... RETURNING and sets each instance's database-assigned key (prepared,
  as above, up to ``FEW_ROWS`` rows).

Both run in the caller's transaction and are statements like any other in ``connection.queries`` when queries
are logged (query-count tests count them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.fields import AutoFieldMixin

from common import prepared

# Fields whose preparation gives back a value of these exact types unchanged (Django's ``get_prep_value`` of
# these classes converts other types only); None too, for all of them. A field with ``auto_now`` is never
# here: its ``pre_save`` sets the value.
_AS_IS: tuple[tuple[type[Field[Any, Any]], tuple[type, ...]], ...] = (
    (models.BooleanField, (bool,)), (models.IntegerField, (int,)), (models.FloatField, (float,)),
    (models.CharField, (str,)), (models.TextField, (str,)), (models.UUIDField, (uuid.UUID,)),
    (models.DateTimeField, ()),
)


def _as_is(field: Field[Any, Any]) -> frozenset[type]:
    """The value types ``field`` writes as they are: a plain attribute read, no preparation (a fifth of the
    CPU of the preparation it skips)."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return frozenset()
    if isinstance(field, models.ForeignKey):
        return _as_is(field.target_field)
    for kind, types in _AS_IS:
        if isinstance(field, kind):
            return frozenset({*types, type(None)})
    return frozenset()


@cache
def _columns(model: type[Model]) -> tuple[str, tuple[tuple[Field[Any, Any], str, frozenset[type]], ...]]:
    """The columns an insert writes (all but a key the database assigns), quoted, and for each its field, its
    attribute and the value types it writes as they are."""
    fields = tuple(f for f in model._meta.concrete_fields if not isinstance(f, AutoFieldMixin))
    ops = connections[DEFAULT_DB_ALIAS].ops
    return (", ".join(ops.quote_name(str(f.column)) for f in fields),
            tuple((f, f.attname, _as_is(f)) for f in fields))


_MISSING = object()  # a deferred or unset attribute: prepared the ORM's way


def _values(obj: Model, fields: tuple[tuple[Field[Any, Any], str, frozenset[type]], ...],
            db: BaseDatabaseWrapper) -> list[Any]:
    values = []
    attributes = obj.__dict__
    for field, attname, as_is in fields:
        value = attributes.get(attname, _MISSING)
        values.append(value if type(value) in as_is else field.get_db_prep_save(field.pre_save(obj, True), db))
    return values


@contextmanager
def _statement(sql: str, *, prepare: bool = False) -> Iterator[tuple[BaseDatabaseWrapper, Any]]:
    """The default database (the wrapper itself, not the proxy: each value's preparation reads it) and a raw
    psycopg cursor (``prepare``: one that binds server-side, see ``common.prepared``), with the statement in
    Django's query log (when it is on) and Django's errors."""
    db = connections[DEFAULT_DB_ALIAS]
    with prepared.cursor() if prepare else db.cursor() as cursor:
        logged = getattr(cursor, "debug_sql", None)  # Django's query log, when it is on (DEBUG, tests)
        with logged(sql) if logged is not None else nullcontext(), db.wrap_database_errors:
            yield db, cursor.cursor


def _saved[M: Model](objs: list[M], alias: str) -> list[M]:
    for obj in objs:
        obj._state.adding, obj._state.db = False, alias
    return objs


@cache
def _copy_sql(model: type[Model]) -> str:
    columns, _ = _columns(model)
    return f"COPY {connections[DEFAULT_DB_ALIAS].ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"


FEW_ROWS = 8  # up to this many rows an insert is prepared (a statement per model and row count)


def copy_insert[M: Model](objs: list[M]) -> list[M]:
    """Insert ``objs`` (new instances of one model) with COPY, or one INSERT if they are few; returns them,
    saved."""
    if not objs:
        return objs
    model = type(objs[0])
    _, fields = _columns(model)
    if len(objs) <= FEW_ROWS:
        sql = _insert_sql(model, len(objs), returning=False)
        with _statement(sql, prepare=True) as (db, cursor):
            cursor.execute(sql, [value for obj in objs for value in _values(obj, fields, db)])
        return _saved(objs, db.alias)
    sql = _copy_sql(model)
    with _statement(sql) as (db, cursor), cursor.copy(sql) as copy:
        for obj in objs:
            copy.write_row(_values(obj, fields, db))
    return _saved(objs, db.alias)


@cache
def _insert_sql(model: type[Model], rows: int, *, returning: bool = True) -> str:
    columns, fields = _columns(model)
    ops = connections[DEFAULT_DB_ALIAS].ops
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    key = f" RETURNING {ops.quote_name(str(model._meta.pk.column))}" if returning else ""  # type: ignore[union-attr]
    return f"INSERT INTO {ops.quote_name(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}{key}"


ROWS_PER_INSERT = 64  # bounds the statements kept (one per model and row count) and their placeholders


def insert_returning[M: Model](objs: list[M]) -> list[M]:
    """Insert ``objs`` (new instances of one model whose key the database assigns), ROWS_PER_INSERT rows per
    INSERT; returns them, saved, with their keys (a VALUES list's rows come back in order, as Django's
    ``bulk_create`` relies on too)."""
    for start in range(0, len(objs), ROWS_PER_INSERT):
        chunk = objs[start:start + ROWS_PER_INSERT]
        _, fields = _columns(type(chunk[0]))
        sql = _insert_sql(type(chunk[0]), len(chunk))
        with _statement(sql, prepare=len(chunk) <= FEW_ROWS) as (db, cursor):
            cursor.execute(sql, [value for obj in chunk for value in _values(obj, fields, db)])
            keys = cursor.fetchall()
        for obj, (key,) in zip(chunk, keys, strict=True):
            obj.pk = key
        _saved(chunk, db.alias)
    return objs
