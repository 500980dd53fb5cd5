"""The check the database pool runs on a connection before handing it out (``config/settings.py``).

psycopg_pool's own check is a round trip (an empty query) on every checkout. A worker thread borrows a
connection for each short database action (a step's claim, then its result: services/steps.py), so that is
two round trips more per step, as many as the step's real statements. This check makes one only when it
could tell something:

- the socket has something to read (an idle connection is sent nothing unless the server is closing it:
  a shutdown or a terminated backend sends an error and closes, a killed backend leaves an end of file), or
- the connection has not been verified by a round trip for ``VERIFY_EVERY`` seconds (a peer that vanished
  without a word, a NAT that dropped the flow: nothing arrives, so only a round trip can tell).

A quiet connection verified moments ago is handed out as is. If it dies in between anyway, the statement
fails as a lost connection would, and callers that retry do so on a fresh connection (services/steps.py).
"""

from __future__ import annotations

import select
import time

from psycopg import Connection
from psycopg_pool import ConnectionPool

VERIFY_EVERY = 2.0  # seconds a quiet connection is trusted after its last round-trip check

_VERIFIED = "_orch_verified_at"


def check(conn: Connection) -> None:
    """Return quietly if ``conn`` may be handed out, else raise (the pool then discards it and tries another)."""
    now = time.monotonic()
    if now - getattr(conn, _VERIFIED, float("-inf")) < VERIFY_EVERY and not _readable(conn):
        return
    ConnectionPool.check_connection(conn)
    setattr(conn, _VERIFIED, now)


def _readable(conn: Connection) -> bool:
    """Has the server sent this idle connection anything (an error, a notice, an end of file)?"""
    if conn.closed:
        return True  # let the round trip raise the pool's usual error
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    return bool(readable)
