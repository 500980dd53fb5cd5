"""Database actions that survive a short outage: retried on a fresh connection, with backoff, while the
database restarts or a connection drops, for as long as the caller may still act (a step's lease, a claim's
few seconds). ``steps`` records a finished agent call this way, so the call is never lost to a blip."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential
from tenacity.stop import stop_base

log = logging.getLogger("orchestrator")

# A database that is restarting or a connection that dropped: worth trying again on a fresh connection.
DB_TRANSIENT = (OperationalError, InterfaceError)


class _stop_at(stop_base):
    def __init__(self, until: Callable[[], float]) -> None:
        self.until = until

    def __call__(self, state: RetryCallState) -> bool:
        return time.monotonic() + (state.upcoming_sleep or 0) >= self.until()


def durably[T](action: Callable[[], T], *, until: Callable[[], float], what: str) -> T:
    """Run a short database action, retrying it on a fresh connection (backoff 0.1 s .. 2 s) while the
    database is unreachable, until ``until()`` (a time.monotonic() value). Re-raises the last error then."""

    def before_sleep(state: RetryCallState) -> None:
        connection.close()  # a broken connection goes back to the pool, which checks before handing one out
        exc = state.outcome.exception() if state.outcome else None
        log.warning("orchestrator.db.retrying", extra={"what": what, "try": state.attempt_number,
                                                       "error": repr(exc)})

    retrying = Retrying(retry=retry_if_exception_type(DB_TRANSIENT), wait=wait_exponential(multiplier=0.1, max=2),
                        stop=_stop_at(until), before_sleep=before_sleep, reraise=True)
    return retrying(action)


def briefly[T](action: Callable[[], T], *, what: str) -> T:
    """A short database action, retried for ORCH_DB_RETRY_FOR while the database is unreachable; then the
    connection goes back to the pool (none is held while an agent waits on the network)."""
    retry_for = time.monotonic() + settings.ORCH_DB_RETRY_FOR
    try:
        return durably(action, until=lambda: retry_for, what=what)
    finally:
        connection.close()
