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
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg.types.json import Jsonb

from common import prepared
from orchestrator.models import Step
from orchestrator.states import STEP_TERMINAL, STEP_UNSUCCESSFUL, StepStatus

_STEP = Step._meta.db_table
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


def counts_of(depends_on: dict[str, Iterable[str]], *,
              succeeded: Iterable[str] = ()) -> dict[str, tuple[list[str], int]]:
    """Each step's (dependents, waiting_on) for a plan whose steps depend as given; ``succeeded`` names the
    steps that have succeeded. A dependency that does not exist counts as not succeeded."""
    done = set(succeeded)
    dependents: dict[str, list[str]] = {key: [] for key in depends_on}
    for key, deps in depends_on.items():
        for dep in dict.fromkeys(deps):
            if dep in dependents:
                dependents[dep].append(key)
    return {key: (sorted(dependents[key]), sum(1 for dep in dict.fromkeys(deps) if dep not in done))
            for key, deps in depends_on.items()}


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
        counts = counts_of({key: node.depends_on for key, node in nodes.items()},
                           succeeded=[key for key, node in nodes.items() if node.status == StepStatus.SUCCEEDED])
        wrong = [{"id": str(id_), "dependents": counts[key][0], "waiting_on": counts[key][1]}
                 for id_, key, _, _, dependents, waiting_on in rows
                 if (sorted(dependents), waiting_on) != counts[key]]
        if wrong:
            params: list[Any] = [Jsonb(wrong)]
            cursor.execute(f"""
                UPDATE {_STEP} s SET dependents = x.dependents, waiting_on = x.waiting_on
                FROM jsonb_to_recordset(%s) AS x(id uuid, dependents varchar[], waiting_on int)
                WHERE s.id = x.id""", params)
    return Graph(nodes, {key: value[0] for key, value in counts.items()})


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
