"""The pool's check before handing out a connection (common/dbpool.py): no round trip for a quiet connection
verified moments ago, a round trip otherwise, and a connection the server has closed is never handed out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from common import dbpool

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn() -> Iterator[psycopg.Connection]:
    params = connection.get_connection_params()
    keep = {k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)}
    with psycopg.connect(**keep, autocommit=True) as fresh:
        yield fresh


def _sent(conn: psycopg.Connection, trace: Path, action: object) -> str:
    """What libpq sent and received while ``action()`` ran (its protocol trace)."""
    with trace.open("w") as out:
        conn.pgconn.trace(out.fileno())
        try:
            action()  # type: ignore[operator]
        finally:
            conn.pgconn.untrace()
    return trace.read_text()


def test_a_quiet_connection_verified_moments_ago_is_handed_out_without_a_round_trip(
        conn: psycopg.Connection, tmp_path: Path) -> None:
    assert connection.pool._check is dbpool.check  # the project's pool uses it
    trace = tmp_path / "trace"

    first = _sent(conn, trace, lambda: dbpool.check(conn))  # never verified: a round trip
    again = _sent(conn, trace, lambda: dbpool.check(conn))  # just verified, nothing to read: none
    setattr(conn, dbpool._VERIFIED, time.monotonic() - dbpool.VERIFY_EVERY - 1)
    later = _sent(conn, trace, lambda: dbpool.check(conn))  # verified too long ago: a round trip

    assert "Query" in first and again == "" and "Query" in later


def test_a_connection_the_server_closed_fails_the_check_even_just_after_a_verification(
        conn: psycopg.Connection) -> None:
    dbpool.check(conn)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    deadline = time.monotonic() + 5
    while not dbpool._readable(conn) and time.monotonic() < deadline:
        time.sleep(0.01)  # the backend's goodbye is on its way

    with pytest.raises(psycopg.OperationalError):
        dbpool.check(conn)
