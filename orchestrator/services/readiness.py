"""What may run next: the one definition of "ready", and of "doomed".

A pending step is *ready* when every step it depends on has succeeded, and *doomed* when a step it depends
on (directly or through other pending steps) ended without success: it can never run.

Readiness is kept as counts, so that a step's end never reads the whole plan: each step carries the keys of
its ``dependents`` and ``waiting_on``, how many of its dependencies have not succeeded. The statement that
records a success decrements its dependents' counts (``transitions.steps_transition``); a dependent whose
count reaches 0 is ready, and only that statement can see it reach 0. New steps get their counts when they
are inserted (``counts_of``), and whatever changes a plan's structure or ends a step otherwise (a failure,
growth, edits, retries) ends with ``graph_refresh`` under the plan's exclusive lock: it reads the plan once,
recomputes both from ``depends_on`` (the truth), writes the rows that were wrong, and judges what is doomed
and ready from the same read. Linear in the plan's size; the lock excludes every step end meanwhile (rule 2
in ``services/__init__.py``).

A *wide* step (more than WIDE dependencies: the join of a fan-out) would make every one of its dependencies'
successes update its row, and a row's lock is held until commit, WAL flush included: 5,000 ends of a fan-out
queued one behind another on the join (measured: 2,000 statements waiting on it at once, Postgres' CPU and
the plan's time doubled on a slow disk). So its dependencies are spread by key over SLOTS counters
(``StepSlot``, ``slot_of``), and its ``waiting_on`` counts the slots not at 0: a success decrements its slot,
and the one success that empties a slot decrements the step. A step has slot rows exactly when it is wide; a
dependent without them is counted directly.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg.types.json import Jsonb

from common import prepared
from common.bulk import copy_insert
from orchestrator.models import Step, StepSlot
from orchestrator.states import STEP_TERMINAL, STEP_UNSUCCESSFUL, StepStatus

_STEP = Step._meta.db_table
_SLOT = StepSlot._meta.db_table
WIDE = 32  # a step with more dependencies than this counts them in slots
SLOTS = 16


def slot_of(key: str) -> int:
    """The slot of a wide step's counters that its dependency ``key`` counts in (``slot_sql`` in Postgres)."""
    return int(hashlib.md5(key.encode()).hexdigest()[:7], 16) % SLOTS


def slot_sql(key: str) -> str:
    """``slot_of`` as SQL, of the text expression ``key`` (for a statement with parameters: ``%%`` is its ``%``)."""
    return f"(('x' || substr(md5({key}), 1, 7))::bit(28)::int %% {SLOTS})"


_UNSUCCESSFUL = frozenset(str(s) for s in STEP_UNSUCCESSFUL)
# Literal, so that the planner matches the partial index ``step_open`` (a parameter would not).
_TERMINAL_SQL = ", ".join(f"'{s}'" for s in sorted(STEP_TERMINAL))


@dataclass(frozen=True)
class Node:
    id: uuid.UUID
    status: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """A plan's steps as read once under its lock, with their counts made true."""

    nodes: dict[str, Node]
    dependents: dict[str, list[str]]

    def doomed(self) -> list[uuid.UUID]:
        """Pending steps behind an unsuccessful step, directly or through other doomed steps."""
        found: set[str] = set()
        frontier = [key for key, node in self.nodes.items() if node.status in _UNSUCCESSFUL]
        while frontier:
            for dependent in self.dependents.get(frontier.pop(), ()):
                if dependent not in found and self.nodes[dependent].status == StepStatus.PENDING:
                    found.add(dependent)
                    frontier.append(dependent)
        return [self.nodes[key].id for key in sorted(found)]

    def ready(self) -> list[uuid.UUID]:
        """Pending steps whose dependencies have all succeeded (none doomed: a doomed step has one that did not)."""
        return [node.id for node in self.nodes.values() if node.status == StepStatus.PENDING and all(
            dep in self.nodes and self.nodes[dep].status == StepStatus.SUCCEEDED for dep in node.depends_on)]


def counts_of(depends_on: Mapping[str, Iterable[str]], *, succeeded: Iterable[str] = (),
              slots: dict[str, dict[int, int]] | None = None) -> dict[str, tuple[list[str], int]]:
    """Each step's (dependents, waiting_on) for a plan whose steps depend as given; ``succeeded`` names the
    steps that have succeeded. A dependency that does not exist counts as not succeeded. ``slots``: what
    ``slots_of`` finds for the same steps, if the caller has it already."""
    done = set(succeeded)
    dependents: dict[str, list[str]] = {key: [] for key in depends_on}
    for key, deps in depends_on.items():
        for dep in dict.fromkeys(deps):
            if dep in dependents:
                dependents[dep].append(key)
    slots = slots_of(depends_on, succeeded=done) if slots is None else slots
    return {key: (sorted(dependents[key]), sum(1 for dep in dict.fromkeys(deps) if dep not in done)
                  if key not in slots else sum(1 for waiting in slots[key].values() if waiting))
            for key, deps in depends_on.items()}


def slots_of(depends_on: Mapping[str, Iterable[str]], *,
             succeeded: Iterable[str] = ()) -> dict[str, dict[int, int]]:
    """Each wide step's slots (every slot one of its dependencies counts in) and how many of the dependencies
    in each have not succeeded."""
    done = set(succeeded)
    found: dict[str, dict[int, int]] = {}
    for key, deps in depends_on.items():
        unique = list(dict.fromkeys(deps))
        if len(unique) > WIDE:
            counts = found[key] = {}
            for dep in unique:
                slot = slot_of(dep)
                counts[slot] = counts.get(slot, 0) + (dep not in done)
    return found


def ranks_of(dependents: dict[str, list[str]]) -> dict[str, int]:
    """Each step's rank, given each step's dependents (as ``counts_of`` finds them): how many steps its longest
    chain of dependents holds, itself included (1 for a sink). The steps must not depend on each other in a
    cycle (plans are validated as a DAG before they are stored)."""
    waiting = Counter(dependent for found in dependents.values() for dependent in found)
    order = [key for key in dependents if not waiting[key]]  # a topological order, roots first
    for key in order:
        for dependent in dependents[key]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                order.append(dependent)
    rank: dict[str, int] = {}
    for key in reversed(order):
        rank[key] = 1 + max((rank[d] for d in dependents[key]), default=0)
    return rank


def graph_refresh(*, plan_id: uuid.UUID) -> Graph:
    """Read the plan's steps, make every ``dependents`` and ``waiting_on`` true (one UPDATE of the rows that
    were wrong), and return the graph. The caller holds the plan's exclusive lock."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, key, status, depends_on, dependents, waiting_on FROM {_STEP} WHERE plan_id = %s",
                       [plan_id])
        rows = cursor.fetchall()
        nodes = {key: Node(id_, status, tuple(deps)) for id_, key, status, deps, _, _ in rows}
        depends_on = {key: node.depends_on for key, node in nodes.items()}
        succeeded = [key for key, node in nodes.items() if node.status == StepStatus.SUCCEEDED]
        slots = slots_of(depends_on, succeeded=succeeded)
        counts = counts_of(depends_on, succeeded=succeeded, slots=slots)
        wrong = [{"id": str(id_), "dependents": counts[key][0], "waiting_on": counts[key][1]}
                 for id_, key, _, _, dependents, waiting_on in rows
                 if (sorted(dependents), waiting_on) != counts[key]]
        if wrong:
            params: list[Any] = [Jsonb(wrong)]
            cursor.execute(f"""
                UPDATE {_STEP} s SET dependents = x.dependents, waiting_on = x.waiting_on
                FROM jsonb_to_recordset(%s) AS x(id uuid, dependents varchar[], waiting_on int)
                WHERE s.id = x.id""", params)
        _slots_refresh(cursor, plan_id, slots)
    return Graph(nodes, {key: value[0] for key, value in counts.items()})


def _slots_refresh(cursor: Any, plan_id: uuid.UUID, slots: dict[str, dict[int, int]]) -> None:
    """Make the plan's slot rows what ``slots`` says (rewritten whole when any differs: a few rows per wide step)."""
    cursor.execute(f"SELECT step_key, slot, waiting FROM {_SLOT} WHERE plan_id = %s", [plan_id])
    if {(key, slot): waiting for key, slot, waiting in cursor.fetchall()} == {
            (key, slot): waiting for key, counts in slots.items() for slot, waiting in counts.items()}:
        return
    cursor.execute(f"DELETE FROM {_SLOT} WHERE plan_id = %s", [plan_id])
    copy_insert(_rows(plan_id, slots))


def slots_add(plan_id: uuid.UUID, slots: dict[str, dict[int, int]]) -> None:
    """Write wide steps' slot rows (``slots_of``), replacing any of a removed step of the same key."""
    if slots:
        StepSlot.objects.filter(plan_id=plan_id, step_key__in=list(slots)).delete()
        copy_insert(_rows(plan_id, slots))


def _rows(plan_id: uuid.UUID, slots: dict[str, dict[int, int]]) -> list[StepSlot]:
    return [StepSlot(plan_id=plan_id, step_key=key, slot=slot, waiting=waiting)
            for key, counts in slots.items() for slot, waiting in counts.items()]


def steps_ready(*, plan_id: uuid.UUID) -> list[uuid.UUID]:
    """Pending steps of the plan whose dependencies have all succeeded, by their counts (an indexed read:
    ``step_ready``)."""
    with prepared.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_STEP} WHERE plan_id = %s AND status = 'pending' AND waiting_on = 0",
                       [plan_id])
        return [row[0] for row in cursor.fetchall()]


def plan_settled(*, plan_id: uuid.UUID) -> bool:
    """Has every step of the plan ended? (An indexed read: ``step_open``.)"""
    with prepared.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {_STEP} WHERE plan_id = %s "
                       f"AND NOT status IN ({_TERMINAL_SQL}))", [plan_id])
        return bool(cursor.fetchone()[0])
