"""The one writer of ``Step.status`` and ``Plan.status``, the plan lock, and the event record.

Concurrency rules: see ``orchestrator/services/__init__.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import JSONField
from django.utils import timezone
from psycopg.types.json import Jsonb

from common import prepared
from common.bulk import insert_returning
from common.errors import NotFound
from orchestrator import events
from orchestrator.models import Plan, PlanEvent, Step, StepSlot
from orchestrator.selectors import plan_row
from orchestrator.services.leases import lease_expires_at
from orchestrator.services.readiness import slot_sql
from orchestrator.states import (
    PLAN_TERMINAL,
    STEP_TRANSITIONS,
    InvalidTransition,
    PlanStatus,
    StepStatus,
    check_plan_transition,
)

EVENT_FOR_STATUS = {
    StepStatus.QUEUED: "step.queued",
    StepStatus.RUNNING: "step.started",
    StepStatus.SUCCEEDED: "step.succeeded",
    StepStatus.FAILED: "step.failed",
    StepStatus.REJECTED: "step.rejected",
    StepStatus.CANCELLED: "step.cancelled",
    StepStatus.WAITING: "step.waiting",
    StepStatus.PENDING: "step.pending",
}

_STEP = Step._meta.db_table
_EVENT = PlanEvent._meta.db_table
_PLAN = Plan._meta.db_table
_SLOT = StepSlot._meta.db_table
_COUNTERS = frozenset({"attempt", "requeues"})
_JSON_COLUMNS = frozenset(f.column for f in Step._meta.concrete_fields if isinstance(f, JSONField))

# A success decrements its dependents' counts of unfinished dependencies (services/readiness.py), in the
# statement that records it: a wide dependent's count in the slot its key hashes to (``slots``), and the
# dependent's own count only for the slot that this emptied; any other dependent's own count directly. The
# counts are grouped first, so that two steps moved at once that share a dependent decrement it twice (an
# UPDATE ... FROM changes a row once, whatever the join yields).
# Both updates also name their rows' keys as arrays (``_BY_KEY``), so that they are found through the (plan, key)
# indexes when the statement is planned without statistics. Planned once per connection (common/prepared.py) on a
# new database, the join alone was a hash join over a scan of the whole step and slot tables (EXPLAIN (GENERIC_PLAN)),
# kept for as long as the connection lived or until an ANALYZE had the statement planned again.
_BY_KEY = """{alias}.plan_id = ANY(ARRAY(SELECT plan_id FROM moved))
                  AND {alias}.{key} = ANY(ARRAY(SELECT unnest(dependents) FROM moved))"""
_FREED = f""", slots AS (
            UPDATE {_SLOT} w SET waiting = w.waiting - c.n
            FROM (SELECT plan_id, dep, {slot_sql("moved.key")} AS slot, count(*) AS n
                  FROM moved CROSS JOIN LATERAL unnest(moved.dependents) AS dep GROUP BY 1, 2, 3) c
            WHERE {_BY_KEY.format(alias="w", key="step_key")}
              AND w.plan_id = c.plan_id AND w.step_key = c.dep AND w.slot = c.slot
            RETURNING w.plan_id, w.step_key, w.waiting
        ), freed AS (
            UPDATE {_STEP} d SET waiting_on = d.waiting_on - c.n
            FROM (SELECT plan_id, dep, sum(n) AS n FROM (
                      SELECT plan_id, dep, 1 AS n FROM moved CROSS JOIN LATERAL unnest(moved.dependents) AS dep
                      WHERE NOT EXISTS (SELECT 1 FROM slots s WHERE s.plan_id = moved.plan_id AND s.step_key = dep)
                      UNION ALL
                      SELECT plan_id, step_key, 1 FROM slots WHERE waiting = 0) x GROUP BY plan_id, dep) c
            WHERE {_BY_KEY.format(alias="d", key="key")} AND d.plan_id = c.plan_id AND d.key = c.dep
            RETURNING d.id, d.plan_id, d.key, d.waiting_on, d.status
        )"""
# What a success reports of its dependents (Moved.freed, .blocked, .recount); any other move frees nothing. A
# wide dependent whose slot did not empty is not in ``freed``: it still waits, and it was found.
_FREED_COLUMNS = """
               ARRAY(SELECT f.id FROM freed f WHERE f.plan_id = moved.plan_id AND f.key = ANY(moved.dependents)
                     AND f.waiting_on = 0 AND f.status = 'pending'),
               EXISTS(SELECT 1 FROM freed f WHERE f.plan_id = moved.plan_id AND f.key = ANY(moved.dependents)
                      AND f.waiting_on > 0 AND f.status = 'pending')
               OR EXISTS(SELECT 1 FROM slots s JOIN """ + _STEP + """ d ON d.plan_id = s.plan_id AND d.key = s.step_key
                         WHERE s.plan_id = moved.plan_id AND s.step_key = ANY(moved.dependents) AND s.waiting > 0
                         AND (d.status || '') = 'pending'),
               cardinality(moved.dependents) <> (SELECT count(*) FROM freed f WHERE f.plan_id = moved.plan_id
                                                 AND f.key = ANY(moved.dependents))
                                                + (SELECT count(*) FROM slots s WHERE s.plan_id = moved.plan_id
                                                   AND s.step_key = ANY(moved.dependents) AND s.waiting > 0),"""
_NO_FREED_COLUMNS = """
               '{}'::uuid[], false, false,"""
# What a claim reports: its dependencies' outputs by key (they succeeded before it was queued, so they are
# final), read by the statement that claims it rather than by a query of their own.
_CONTEXT_COLUMN = f"""
               (SELECT jsonb_object_agg(d.key, d.output) FROM {_STEP} d
                WHERE d.plan_id = moved.plan_id AND d.key = ANY(moved.depends_on)),"""

# And whether the success of the step it claims may free a dependent (``steps._succeed_shared`` plans its
# transaction on it): a dependent with few dependencies left (a DAG's step waits on a handful, and the others
# may end before this one: "the last one now" missed those, and their hop took a second transaction and commit
# under the exclusive lock), or, of a wide dependent (slots) or one waiting on more, only while this step is its
# last unfinished dependency. A join of many siblings counted on its own row thus keeps their ends in autocommit,
# each holding the join's row the shortest time.
MAY_FREE_WAITING = 3
_MAY_FREE_COLUMN = f"""
               EXISTS(SELECT 1 FROM {_STEP} d WHERE d.plan_id = moved.plan_id AND d.key = ANY(moved.dependents)
                      AND d.waiting_on >= 1 AND COALESCE((SELECT w.waiting = 1 AND d.waiting_on = 1 FROM {_SLOT} w
                          WHERE w.plan_id = d.plan_id AND w.step_key = d.key AND w.slot = {slot_sql("moved.key")}),
                          d.waiting_on <= {MAY_FREE_WAITING})),"""


@dataclass(frozen=True)
class Moved:
    """A step that ``steps_transition`` moved, as it is after the move."""

    id: uuid.UUID
    plan_id: uuid.UUID
    key: str
    agent: str
    attempt: int
    input: dict[str, Any]
    depends_on: list[str]
    timeout: float
    deadline: float
    rank: int = 1  # Step.rank: which of the steps freed together a worker runs itself (scheduling._queue)
    # A success only: its dependents whose last dependency this was (pending, now ready), and whether any
    # dependent still waits on others (then the plan cannot have settled with this step).
    freed: tuple[uuid.UUID, ...] = ()
    blocked: bool = False
    # Not every dependent it names was counted down: the plan's structure changed while the statement waited
    # for its lock (a dependent added since its snapshot). The counts must be recomputed (a full advance).
    recount: bool = False
    # A claim only (a move to running): the outputs of its dependencies, by key (what its agent is given).
    context: dict[str, Any] | None = None
    # A claim only: at the claim, its success may free a dependent (``_MAY_FREE_COLUMN``).
    may_free: bool = False
    queued_at: datetime | None = None  # when it was queued (a pull resumes after the last one it took)


def events_record(*, plan_id: uuid.UUID, items: list[tuple[str, str, dict[str, Any]]],
                  actor: User | None = None) -> None:
    """Append (type, step_key, data) events to the plan's record. Runs in the caller's transaction.

    Once that transaction commits, the events go out to live subscribers (``orchestrator.events``): never
    before (a rolled-back event is never seen) and never raising (a client that missed the announcement
    resumes from these rows).
    """
    now = timezone.now()
    stored = insert_returning([
        PlanEvent(plan_id=plan_id, type=type_, step_key=key, data=data, actor=actor, created_at=now)
        for type_, key, data in items
    ])
    events.publish_on_commit(stored)


def steps_transition(*, step_ids: Iterable[uuid.UUID], sources: Iterable[StepStatus], to: StepStatus,
                     attempt: int | list[int] | None = None, increment: tuple[str, ...] = (),
                     fields: dict[str, Any] | None = None,
                     run_started_at: datetime | None = None, event: str | None = None,
                     event_data: dict[str, Any] | None = None, actor: User | None = None,
                     plan_shared: bool = False,
                     oldest_of: list[tuple[str, datetime, uuid.UUID]] | None = None) -> list[Moved]:
    """Move the given steps from one of ``sources`` to ``to``; return those that moved.

    The caller names the statuses it expects the steps in (each move must be one the state machine
    allows: ``InvalidTransition`` otherwise, a programming error). One statement: a conditional
    UPDATE ... RETURNING whose rows also append one event each. Steps in another status, or whose attempt
    is not ``attempt`` (when given; a list gives each step's own), are left alone: a duplicate or stale
    request is a no-op. ``fields`` are plain column values, ``increment`` names integer columns to add one
    to (``attempt``: a new delivery; ``requeues``); ``run_started_at`` sets the run's deadline (that time plus the
    step's ``deadline`` seconds). Events go out to live subscribers after commit.

    A move to ``succeeded`` also decrements its dependents' counts (services/readiness.py) and reports which
    it freed. ``plan_shared`` (the fast path of a success, run in autocommit): the statement itself first
    locks the plan's row FOR SHARE, and moves only steps of a running plan that cannot grow (rule 2 in
    ``services/__init__.py``).

    ``oldest_of`` (agents, each with the ``(queued_at, id)`` to resume after; ``step_ids`` is then empty): move the
    step of those agents queued longest after its agent's mark that no other statement is claiming at this
    moment (``FOR UPDATE SKIP LOCKED``), if any.
    """
    step_ids = list(step_ids)
    source_list = [StepStatus(s) for s in sources]
    for source in source_list:
        if to not in STEP_TRANSITIONS[source]:
            raise InvalidTransition(f"a {source} step cannot become {to}")
    if not (step_ids or oldest_of) or not source_list:
        return []
    sets: list[str] = ["status = %s"]
    params: list[Any] = [str(to)]
    for column, value in (fields or {}).items():
        if column in _JSON_COLUMNS:
            # Always a jsonb parameter, None as JSON null stored as SQL NULL (as Django stores None): a prepared
            # statement is keyed on its parameters' types too, so a None here made a statement of its own. A
            # success with no output (a noop step, a join) ran that one so seldom on a connection that it was
            # never prepared, and it was planned every time (3.1 ms against 1.2 for the same success prepared).
            sets.append(f"{column} = NULLIF(%s, 'null'::jsonb)")
            params.append(Jsonb(value))
        else:
            sets.append(f"{column} = %s")
            params.append(value)
    if not set(increment) <= _COUNTERS:
        raise ValueError(f"only {sorted(_COUNTERS)} can be incremented, not {increment}")
    sets += [f"{column} = {column} + 1" for column in increment]
    if run_started_at is not None:
        sets.append("deadline_at = %s::timestamptz + make_interval(secs => deadline)")
        params.append(run_started_at)
    # Steps are found by their key; their status is checked, never searched: written so (``|| ''``) that no
    # status index can serve it. Statistics gathered while few steps were queued or running make such an index
    # look cheaper than the key, and a claim then read every queued step (199 rows filtered out per claim of
    # a 200-wide plan): a cost per step that grows with the work in flight.
    where = "(status || '') = ANY(%s)"
    params.append([str(s) for s in source_list])
    if oldest_of is not None:
        # The one query here that searches by status, through the index of each agent's queued steps in order
        # (step_queued_by_agent): each agent's oldest one not being claimed, then the oldest of those. One scan
        # of the queued steps in order, filtering by agent, read the whole backlog of every other queue that
        # was queued earlier (1,459 rows of another queue read for each pull, to find none).
        # It resumes after the mark of the step its process took last, not at the oldest entry: the entries of the
        # steps claimed since are dead, but Postgres can neither prune them nor mark them dead while any
        # transaction holds an older snapshot (an ANALYZE, a report, a backup), and a scan from the oldest entry
        # visited every one of them (a 5,000-step fan-out: Postgres' CPU per step 1.7 -> 4.2 ms).
        where += (" AND id = (SELECT o.id FROM unnest(%s::text[], %s::timestamptz[], %s::uuid[]) AS a(agent, at, id)"
                  f" CROSS JOIN LATERAL (SELECT id, queued_at FROM {_STEP} WHERE status = 'queued'"
                  " AND agent = a.agent AND (queued_at, id) > (a.at, a.id) ORDER BY queued_at, id LIMIT 1"
                  " FOR UPDATE SKIP LOCKED) o ORDER BY o.queued_at, o.id LIMIT 1)")
        params += [[agent for agent, _, _ in oldest_of], [at for _, at, _ in oldest_of],
                   [id_ for _, _, id_ in oldest_of]]
    elif isinstance(attempt, list):
        where += " AND (id, attempt) IN (SELECT * FROM unnest(%s::uuid[], %s::int[]))"
        params += [step_ids, attempt]
    else:
        where += " AND id = ANY(%s)"
        params.append(step_ids)
        if attempt is not None:
            where += " AND attempt = %s"
            params.append(attempt)
    lock = ""
    if plan_shared:
        if len(step_ids) != 1:
            raise ValueError("the shared path moves one step (it locks that step's plan)")
        lock = f"""shared AS (
            SELECT id FROM {_PLAN}
            WHERE id = (SELECT plan_id FROM {_STEP} WHERE id = %s) AND (status || '') = 'running'
            FOR SHARE
        ), """
        where += " AND NOT grows AND EXISTS (SELECT 1 FROM shared)"  # the plan of the one step moved
        params = [step_ids[0], *params]
    succeeded, claims = to == StepStatus.SUCCEEDED, to == StepStatus.RUNNING
    event_type, extra, now = event or EVENT_FOR_STATUS[to], event_data or {}, timezone.now()
    params += [event_type, Jsonb(extra), actor.pk if actor else None, now]
    sql = f"""
        WITH {lock}moved AS (
            UPDATE {_STEP} SET {", ".join(sets)} WHERE {where}
            RETURNING id, plan_id, key, agent, attempt, input, depends_on, timeout, deadline, dependents, rank,
                      queued_at
        ), recorded AS (
            INSERT INTO {_EVENT} (plan_id, step_key, type, data, actor_id, created_at)
            SELECT plan_id, key, %s, jsonb_build_object('attempt', attempt, 'agent', agent) || %s::jsonb, %s::bigint, %s
            FROM moved
            RETURNING id, plan_id, step_key
        ){_FREED if succeeded else ""}
        SELECT moved.id, moved.plan_id, moved.key, moved.agent, moved.attempt, moved.input, moved.depends_on,
               moved.timeout, moved.deadline,{_FREED_COLUMNS if succeeded else _NO_FREED_COLUMNS}
               {_CONTEXT_COLUMN + _MAY_FREE_COLUMN if claims else "NULL, false,"} moved.rank, moved.queued_at,
               recorded.id
        FROM moved JOIN recorded ON recorded.plan_id = moved.plan_id AND recorded.step_key = moved.key"""
    with prepared.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # Django has psycopg hand jsonb back as text (JSONField decodes it); so does this raw cursor.
    moved = [Moved(id=row[0], plan_id=row[1], key=row[2], agent=row[3], attempt=row[4], input=json.loads(row[5]),
                   depends_on=row[6], timeout=row[7], deadline=row[8], freed=tuple(row[9]), blocked=row[10],
                   recount=row[11], context=json.loads(row[12] or "{}") if claims else None,
                   may_free=row[13], rank=row[14], queued_at=row[15])
             for row in rows]
    events.publish_on_commit(
        PlanEvent(id=row[-1], plan_id=step.plan_id, step_key=step.key, type=event_type, actor=actor,
                  data={"attempt": step.attempt, "agent": step.agent, **extra}, created_at=now)
        for step, row in zip(moved, rows, strict=True)
    )
    return moved


def step_claimed(*, step_id: uuid.UUID, attempt: int, worker: str) -> Moved | None:
    """Claim a queued step for ``worker`` at ``attempt`` (queued -> running): its lease and its run's deadline
    start now. One statement, in the caller's transaction or in autocommit; None if it was not queued at that
    attempt (a duplicate or stale delivery)."""
    now = timezone.now()
    moved = steps_transition(step_ids=[step_id], sources=[StepStatus.QUEUED], to=StepStatus.RUNNING,
                             attempt=attempt, run_started_at=now, event_data={"worker": worker},
                             fields={"started_at": now, "worker": worker, "lease_expires_at": lease_expires_at()})
    return moved[0] if moved else None


PULL_START = (datetime(1, 1, 1, tzinfo=UTC), uuid.UUID(int=0))  # before every queued step


def step_claimed_oldest(*, agents: list[str], worker: str,
                        after: dict[str, tuple[datetime, uuid.UUID]] | None = None) -> Moved | None:
    """Claim for ``worker`` the step of ``agents`` that has been queued longest, at its current attempt, like
    ``step_claimed`` (its message, when it comes, is then a no-op); of each agent, only a step queued after its
    mark in ``after`` (``(queued_at, id)``; none: any). One statement; None if none is queued."""
    now = timezone.now()
    marks = [(agent, *(after or {}).get(agent, PULL_START)) for agent in agents]
    moved = steps_transition(step_ids=[], oldest_of=marks, sources=[StepStatus.QUEUED], to=StepStatus.RUNNING,
                             run_started_at=now, event_data={"worker": worker},
                             fields={"started_at": now, "worker": worker, "lease_expires_at": lease_expires_at()})
    return moved[0] if moved else None


def plan_locked(plan_id: uuid.UUID) -> Plan:
    """The plan, its row locked for the rest of the transaction. Raises NotFound.

    FOR NO KEY UPDATE: event rows inserted by claims reference the plan (FOR KEY SHARE) and must not queue
    behind a step's end. Hand-written, like ``plan_of_step_locked``: every follow-up of a freeing success takes
    it, and compiling the ORM's query cost more than running it."""
    plan = plan_row("WHERE id = %s FOR NO KEY UPDATE", [plan_id])
    if plan is None:
        raise NotFound(f"no plan {plan_id}")
    return plan


def plan_of_step_locked(step_id: uuid.UUID) -> Plan | None:
    """The step's plan, locked, in one statement (a hot path: compiling the ORM query cost more than
    running it). None if there is no such step."""
    return plan_row(f"WHERE id = (SELECT plan_id FROM {_STEP} WHERE id = %s) FOR NO KEY UPDATE", [step_id])


def plan_transition(plan: Plan, to: PlanStatus, *, data: dict[str, Any] | None = None,
                    actor: User | None = None, **fields: Any) -> None:
    """The only writer of ``Plan.status``; the caller holds the plan's row lock. A plan that ends has its
    memory archived after the commit (``memory.plan_ended``)."""
    check_plan_transition(plan.status, to)
    plan.status = to
    now = timezone.now()
    if to == PlanStatus.RUNNING:
        plan.started_at = now
    if to in PLAN_TERMINAL:
        plan.finished_at = now
        from orchestrator.services.memory import plan_ended  # memory's side needs these transitions

        plan_ended(plan.id)  # its memory is archived once this commits
    for name, value in fields.items():
        setattr(plan, name, value)
    plan.save(update_fields=["status", "started_at", "finished_at", *fields])
    event = {"running": "plan.started", "succeeded": "plan.completed"}.get(str(to), f"plan.{to}")
    events_record(plan_id=plan.id, items=[(event, "", data or {})], actor=actor)
