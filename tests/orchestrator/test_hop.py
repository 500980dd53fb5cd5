"""A hop down a chain: the success that frees the next step queues it in its own transaction, under the plan's
shared lock, when the gate needs no decision over the whole plan; and a thread's pulls pause once the queue is
found empty (services/steps.py, services/scheduling.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from approvals.models import Approval
from orchestrator import services
from orchestrator.models import Plan, Step
from orchestrator.services import pulls

pytestmark = pytest.mark.django_db(transaction=True)


def steps_of(plan: Plan) -> dict[str, Step]:
    return {s.key: s for s in Step.objects.filter(plan=plan)}


def plan_nodes(sql: str, *, run: bool = True) -> list[dict[str, Any]]:
    """Every node of ``sql``'s plan: as executed (EXPLAIN ANALYZE, rolled back), or as planned (``run=False``)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({'ANALYZE, ' if run else ''}FORMAT JSON) {sql}")
        explained = cursor.fetchone()[0]
        transaction.set_rollback(True)

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    return nodes(explained[0]["Plan"])


def step_scans(sql: str, tables: tuple[str, ...] = ("orchestrator_step",)) -> list[dict[str, Any]]:
    """The nodes of ``sql``'s executed plan that read the steps table (or ``tables``)."""
    return [n for n in plan_nodes(sql) if n.get("Relation Name") in tables]


def step_rows_read(sql: str) -> float:
    """How many rows of the steps table ``sql`` reads (returned by its scans, or filtered out by them)."""
    return sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
               for n in step_scans(sql))


def exclusive_locks(captured: CaptureQueriesContext) -> int:
    return sum("FOR NO KEY UPDATE" in query["sql"] for query in captured.captured_queries)


def test_a_chain_commits_each_hop_once_under_the_shared_lock(user: Any) -> None:
    """a -> b -> c run by one delivery: each success queues (and claims for this thread) the step it frees in the
    transaction that records it, so the plan's exclusive lock is taken once, to finish the plan (before: once
    more per hop, in a second transaction after the success's own commit)."""
    plan = services.plan_create(owner=user, request="chain", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held", "depends_on": ["a"]},
        {"key": "c", "agent": "held", "depends_on": ["b"]}])
    a = steps_of(plan)["a"]
    with CaptureQueriesContext(connection) as captured:
        services.step_run(step_id=a.id, attempt=1, worker="w")

    assert {k: (s.status, s.worker) for k, s in steps_of(plan).items()} == {
        "a": ("succeeded", "w"), "b": ("succeeded", "w"), "c": ("succeeded", "w")}
    assert Plan.objects.get(id=plan.id).status == "succeeded"
    assert exclusive_locks(captured) == 1


def test_of_the_steps_a_success_frees_the_thread_runs_the_one_with_the_longest_chain_after_it(user: Any) -> None:
    """a frees b (a sink) and c (c -> d): the thread runs c, then d, itself and sends b: the critical path
    first (Step.rank), so the step more likely to set the plan's end does not wait for a message. Before ranks
    the statement's order decided, and it ran b."""
    plan = services.plan_create(owner=user, request="rank", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held", "depends_on": ["a"]},
        {"key": "c", "agent": "held", "depends_on": ["a"]}, {"key": "d", "agent": "held", "depends_on": ["c"]},
        {"key": "e", "agent": "held", "depends_on": ["a", "d"]}])
    assert {k: s.rank for k, s in steps_of(plan).items()} == {"a": 4, "b": 1, "c": 3, "d": 2, "e": 1}

    services.step_run(step_id=steps_of(plan)["a"].id, attempt=1, worker="w")

    assert {k: s.status for k, s in steps_of(plan).items()} == {
        "a": "succeeded", "b": "queued", "c": "succeeded", "d": "succeeded", "e": "succeeded"}


def test_a_claim_says_whether_its_success_may_free_a_dependent(user: Any) -> None:
    """A dependent waiting on a few steps may be freed by any of them (the others may end first); one waiting on
    more than MAY_FREE_WAITING only by its last; a sink frees nothing."""
    from orchestrator.services.transitions import MAY_FREE_WAITING

    many = MAY_FREE_WAITING + 2  # p1.. p(many-1): the join waits on one more than MAY_FREE_WAITING
    plan = services.plan_create(owner=user, request="join", steps=[
        *({"key": f"p{i}", "agent": "held"} for i in range(many)),
        {"key": "few", "agent": "held", "depends_on": ["p0", "p1"]},
        {"key": "join", "agent": "held", "depends_on": [f"p{i}" for i in range(1, many)]},
        {"key": "sink", "agent": "held", "depends_on": ["few"]}])
    steps = steps_of(plan)
    claims = {key: services.step_claim(step_id=steps[key].id, attempt=1, worker="w") for key in ("p0", "p1", "p2")}
    assert claims["p0"] is not None and claims["p0"].may_free  # few waits on 2 of them
    assert claims["p2"] is not None and not claims["p2"].may_free  # join waits on all but p0: one too many
    for i in range(1, many - 1):
        services.step_succeed(step_id=steps[f"p{i}"].id, attempt=1, output=i, usage=None)
    last = services.step_claim(step_id=steps[f"p{many - 1}"].id, attempt=1, worker="w")
    assert last is not None and last.may_free  # the join's last
    services.step_succeed(step_id=steps["p0"].id, attempt=1, output=0, usage=None)
    few = services.step_claim(step_id=steps["few"].id, attempt=1, worker="w")
    assert few is not None and few.may_free  # sink waits on it alone
    services.step_succeed(step_id=steps["few"].id, attempt=1, output="few", usage=None)
    sink = services.step_claim(step_id=steps["sink"].id, attempt=1, worker="w")
    assert sink is not None and not sink.may_free  # a sink has no dependent to free


@pytest.mark.parametrize("dependent", [{"agent": "held", "approval": True}, {"agent": "held_llm"}],
                         ids=["approval", "estimate"])
def test_a_freed_step_that_needs_a_decision_is_gated_under_the_exclusive_lock(user: Any,
                                                                               dependent: dict[str, Any]) -> None:
    """A step the plan asks a person to approve, or one whose estimate is reserved against budgets, is judged
    under the exclusive lock, after the freeing success's commit, as before."""
    plan = services.plan_create(owner=user, request="gated", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "depends_on": ["a"], **dependent}])
    a = steps_of(plan)["a"]
    with CaptureQueriesContext(connection) as captured:
        services.step_run(step_id=a.id, attempt=1, worker="w")

    b = steps_of(plan)["b"]
    assert exclusive_locks(captured) >= 1
    if "approval" in dependent:
        assert b.status == "waiting" and Approval.objects.filter(step_id=b.id, status="pending").exists()
    else:  # no budget: it ran, on this thread, once the gate had freed it
        assert (b.status, b.worker) == ("succeeded", "w")


def test_after_an_empty_pull_the_threads_leave_the_queue_to_its_messages(user: Any, settings: Any,
                                                                        monkeypatch: Any) -> None:
    """Once a pull finds the queue empty, no thread asks again for ORCH_PULL_IDLE seconds, neither a delivery
    that claimed nothing (a leftover message) nor one that has just run its step: a step queued meanwhile runs
    on its own message. Once the pause is over, a thread that ran its step pulls again."""
    monkeypatch.setattr(pulls, "_pull_idle_until", {})
    settings.ORCH_PULL_IDLE = 60
    first = services.plan_create(owner=user, request="alone", steps=[{"key": "a", "agent": "held"}])
    a = steps_of(first)["a"]
    services.step_run(step_id=a.id, attempt=1, worker="w", queue="held")  # runs a, then pulls: empty

    second = services.plan_create(owner=user, request="later", steps=[
        {"key": "b", "agent": "held"}, {"key": "c", "agent": "held"}])
    services.step_run(step_id=a.id, attempt=1, worker="dup", queue="held")  # a's message again: a no-op
    assert {k: s.status for k, s in steps_of(second).items()} == {"b": "queued", "c": "queued"}

    services.step_run(step_id=steps_of(second)["b"].id, attempt=1, worker="w2", queue="held")
    assert {k: (s.status, s.worker) for k, s in steps_of(second).items()} == {
        "b": ("succeeded", "w2"), "c": ("queued", "")}

    pulls._pull_idle_until.clear()  # the pause is over
    third = services.plan_create(owner=user, request="after", steps=[{"key": "d", "agent": "held"}])
    services.step_run(step_id=steps_of(third)["d"].id, attempt=1, worker="w3", queue="held")
    assert {k: (s.status, s.worker) for k, s in steps_of(second).items()} == {
        "b": ("succeeded", "w2"), "c": ("succeeded", "w3")}


def test_the_message_of_a_step_this_process_pulled_claims_it_without_a_statement(user: Any, settings: Any,
                                                                                monkeypatch: Any) -> None:
    """A wide fan-out's messages mostly come after their steps were pulled: such a delivery knows, without asking
    the database, that its claim at that attempt cannot succeed. Only the first delivery of that attempt: a
    duplicate, or a message of a step pulled by another process, asks the database as every delivery does."""
    monkeypatch.setattr(pulls, "_pull_idle_until", {})
    monkeypatch.setattr(pulls, "_pulled", {})
    settings.ORCH_PULL_IDLE = 60
    plan = services.plan_create(owner=user, request="wide", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held"}])
    a, b = steps_of(plan)["a"], steps_of(plan)["b"]
    services.step_run(step_id=a.id, attempt=1, worker="w", queue="held")  # runs a, pulls b, then finds none
    assert steps_of(plan)["b"].worker == "w"

    with CaptureQueriesContext(connection) as first:
        services.step_run(step_id=b.id, attempt=1, worker="late", queue="held")  # b's message
    with CaptureQueriesContext(connection) as again:
        services.step_run(step_id=b.id, attempt=1, worker="dup", queue="held")  # the same message, delivered twice

    assert first.captured_queries == []
    assert [q["sql"].count("UPDATE orchestrator_step") for q in again.captured_queries] == [1]  # a no-op claim
    assert {k: (s.status, s.worker, s.attempt) for k, s in steps_of(plan).items()} == {
        "a": ("succeeded", "w", 1), "b": ("succeeded", "w", 1)}


def test_the_gate_reads_its_freed_steps_by_id_however_many_steps_are_open(user: Any) -> None:
    """The hop's read of the steps it freed (``selectors.steps_pending_to_gate``) finds them by id, whatever the
    statistics say. With statistics taken while few steps were open, a plain ``status = 'pending'`` matched the
    partial index of open steps, and the read went through every open step of every plan (3.3 ms, the slowest
    statement of a hop, in a database with 5,459 open steps)."""
    from orchestrator import selectors

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestrator_step")  # statistics of a database with few open steps
    for n in range(4):  # then many open steps, in other plans
        services.plan_create(owner=user, request=f"open {n}", steps=[
            {"key": f"s{i}", "agent": "held", **({"depends_on": ["s0"]} if i else {})} for i in range(150)])
    plan = services.plan_create(owner=user, request="gated", steps=[
        {"key": "a", "agent": "held"}, {"key": "b", "agent": "held", "depends_on": ["a"]}])
    with CaptureQueriesContext(connection) as captured:
        selectors.steps_pending_to_gate([steps_of(plan)["b"].id])
    (read,) = [q["sql"] for q in captured.captured_queries if "p.template" in q["sql"]]
    scans = step_scans(read)
    assert [n.get("Index Name") for n in scans] == ["orchestrator_step_pkey"]
    assert all(n.get("Rows Removed by Filter", 0) == 0 for n in scans)


def test_a_pull_reads_nothing_of_another_queues_backlog(user: Any) -> None:
    """A worker's pull (``transitions.step_claimed_oldest``) reads each of its agents' oldest queued step, not the
    queued steps of every queue in order: a backlog of 300 steps on another queue, queued first, costs a pull
    nothing (it read all 300 to find none of its own)."""
    from orchestrator.services.transitions import step_claimed_oldest

    services.plan_create(owner=user, request="backlog", steps=[{"key": f"s{i}", "agent": "held"} for i in range(300)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestrator_step")
    with CaptureQueriesContext(connection) as captured:
        assert step_claimed_oldest(agents=["where", "where_inline"], worker="w") is None
    (pull,) = [q["sql"] for q in captured.captured_queries if "SKIP LOCKED" in q["sql"]]
    read = step_rows_read(pull)
    assert read == 0


def _buffers(sql: str) -> int:
    """The buffers ``sql`` touches (EXPLAIN ANALYZE, rolled back), through the indexes a worker's generic plan
    uses (with statistics of a few rows, a plan for these literal values may read the whole small table)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0][0]["Plan"]
        transaction.set_rollback(True)
    return int(plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0))


def test_a_pull_resumes_after_the_step_it_took_last_while_an_old_snapshot_is_held(user: Any,
                                                                                  monkeypatch: Any) -> None:
    """While another session holds an old snapshot (an ANALYZE, a report, a backup), Postgres can neither prune
    the queued-steps index entries of the steps claimed since nor mark them dead, and a pull that scanned from
    the oldest entry visited every one of them: its cost grew with the steps claimed (a 5,000-step fan-out:
    Postgres' CPU per step 1.7 -> 4.2 ms). A process's pull resumes after the step it took last."""
    import psycopg
    from django.conf import settings

    from orchestrator.services.transitions import step_claimed_oldest

    monkeypatch.setattr(pulls, "_pull_after", {})
    monkeypatch.setattr(pulls, "_pull_idle_until", {})
    services.plan_create(owner=user, request="wide", steps=[{"key": f"s{i}", "agent": "held"} for i in range(400)])
    connection.ensure_connection()  # the other session: on the very database this test's connection uses
    with psycopg.connect(**connection.connection.info.get_parameters(),
                         password=settings.DATABASES["default"]["PASSWORD"] or None) as other:
        other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        other.execute("SELECT count(*) FROM orchestrator_step").fetchone()  # its snapshot, held from here
        for _ in range(300):
            assert pulls.claim_oldest("held", "w") is not None
        with CaptureQueriesContext(connection) as resumed:
            step_claimed_oldest(agents=["held"], worker="w", after=pulls._pull_after)
        with CaptureQueriesContext(connection) as from_oldest:
            step_claimed_oldest(agents=["held"], worker="w")
        statements = [[q["sql"] for q in c.captured_queries if "SKIP LOCKED" in q["sql"]][0]
                      for c in (resumed, from_oldest)]
        touched = [_buffers(sql) for sql in statements]
        other.rollback()

    assert touched[0] * 4 < touched[1], touched  # from the oldest: a walk through the 300 steps claimed since


def test_a_claim_looks_up_its_dependencies_and_dependents_by_key_in_a_plan_of_any_size(user: Any) -> None:
    """A claim's context (its dependencies' outputs) and its last-of check (its dependents' counts) read those
    steps by (plan, key). With statistics taken while plans were small, and an index on the plan alone beside
    the (plan, key) one, Postgres read them through the plan's index and filtered the plan's every step: 302
    rows here, 10,000 for a claim in a plan of 5,000 steps (migration 0014 dropped that index)."""
    from orchestrator.services.transitions import step_claimed

    for n in range(40):  # a database of small plans, as the API's users make
        services.plan_create(owner=user, request=f"small {n}", steps=[{"key": "a", "agent": "held"}])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestrator_step")
    plan = services.plan_create(owner=user, request="wide", steps=[
        *({"key": f"s{i}", "agent": "held"} for i in range(300)),
        {"key": "join", "agent": "held", "depends_on": [f"s{i}" for i in range(300)]}])
    step = steps_of(plan)["s7"]
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        assert step_claimed(step_id=step.id, attempt=1, worker="w") is not None
        transaction.set_rollback(True)  # still queued: EXPLAIN ANALYZE below runs the same claim
    (claim,) = [q["sql"] for q in captured.captured_queries if "jsonb_object_agg" in q["sql"]]
    read = step_rows_read(claim)
    assert read <= 3  # the step itself, and its one dependent (its context is empty)
