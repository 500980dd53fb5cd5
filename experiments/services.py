"""Every write of the experiments app: syncing experiments.yaml, assigning plans, scoring them, and the
stop rule.

Concurrency: an assignment is written in the transaction that creates its plan (one row per plan, unique
on plan_id). Scores are written by a conditional UPDATE (``scored_at IS NULL``), so two evaluators cannot
score a plan twice; a variant is stopped by a conditional UPDATE (``status = running``), so it is
stopped, and its event recorded, once. The judge's LLM call runs outside any transaction.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from approvals import api as approvals
from common.queues import Queue
from experiments import config, hooks, judge, stats
from experiments.models import HIGHER_IS_BETTER, Assignment, Experiment, ExperimentEvent, Status, Variant

log = logging.getLogger("experiments")

VARIANT_STOPPED = "experiment.variant_stopped"
JUDGE_TASK = "experiments.judge"
JUDGE_MAX_TRIES = 3


@dataclass(frozen=True)
class Choice:
    """The variant a new plan gets: its template (the plan's own unless the variant names one) and the
    agent it swaps in for the experiment's agent, if any."""

    experiment_id: int
    experiment: str
    variant_id: int
    variant: str
    template: str
    swap_from: str = ""
    swap_to: str = ""

    def agent_for(self, agent: str) -> str:
        return self.swap_to if self.swap_to and agent == self.swap_from else agent


@dataclass(frozen=True)
class PlanOutcome:
    """An ended plan, as the orchestrator reports it (orchestrator/experimenting.py)."""

    plan_id: uuid.UUID
    status: str
    request: str
    result: Any
    tokens: int
    cost: Decimal
    latency: float | None


OutcomeReader = Callable[[list[uuid.UUID]], list[PlanOutcome]]
_readers: list[OutcomeReader] = []


def on_plan_outcomes(reader: OutcomeReader) -> None:
    """The orchestrator registers how to read ended plans (in its AppConfig.ready()): this app never
    imports its models. ``reader(plan_ids)`` returns the ended ones only."""
    _readers[:] = [reader]


# --- experiments.yaml ------------------------------------------------------------------------------------


def experiments_sync() -> int:
    """Create or update the enabled experiments of EXPERIMENTS_FILE and their variants (a stopped variant
    stays stopped; experiments and variants no longer in the file are left as they are, with their data).
    Returns how many experiments the file holds. Raises ExperimentConfigError."""
    config.load.cache_clear()
    found = config.load()
    with transaction.atomic():
        for name, exp in found.experiments.items():
            if not exp.enabled:
                continue
            judge_config = exp.judge
            experiment, _ = Experiment.objects.update_or_create(name=name, defaults={
                "description": exp.description, "template": exp.template, "agent": exp.agent,
                "sticky": exp.sticky, "judge_agent": judge_config.agent if judge_config else "",
                "rubric": judge_config.rubric if judge_config else "", "stop_metric": exp.stop.metric,
                "stop_alpha": exp.stop.alpha, "stop_min_samples": exp.stop.min_samples, "from_file": True})
            for variant_name, variant in exp.variants.items():
                Variant.objects.update_or_create(experiment=experiment, name=variant_name, defaults={
                    "weight": variant.weight, "system_prompt": variant.system_prompt, "model": variant.model,
                    "agent": variant.agent, "template": variant.template})
    hooks.forget()  # so this process sees what the file started at once
    return len(found.experiments)


_synced = {"done": False}


def _sync_once() -> None:
    """The file is synced once per process before the first assignment (and on every evaluation)."""
    if _synced["done"]:
        return
    try:
        experiments_sync()
    except config.ExperimentConfigError as exc:  # `manage.py check` says so at start; plans go on
        log.error("experiments.file_invalid", extra={"error": exc.message})
    _synced["done"] = True


# --- assignment ------------------------------------------------------------------------------------------


def plan_variant(*, owner_id: int, template: str) -> Choice | None:
    """The variant a new plan of ``owner_id`` from ``template`` ("" for explicit or LLM plans) gets, or None
    when no running experiment covers it. A template's own experiment comes before one for every plan.

    Sticky per owner: a hash of experiment and owner picks the variant, so a person's plans all get the same
    one (while the set of running variants stays the same); per plan: drawn afresh. Reads only. Whether any
    experiment runs is known per process for EXPERIMENTS_RUNNING_TTL seconds (5), as for the agents' call
    hook: an experiment started in the admin covers a process's new plans within that time."""
    _sync_once()
    if not hooks.any_running():  # most of the time: no query per plan, one every few seconds per process
        return None
    experiment = (Experiment.objects.filter(status=Status.RUNNING).filter(Q(template=template) | Q(template=""))
                  .order_by("-template", "name").first())
    if experiment is None:
        return None
    variants = list(experiment.variants.filter(status=Status.RUNNING, weight__gt=0).order_by("name"))
    if not variants:
        return None
    key = f"{experiment.name}:{owner_id}" if experiment.sticky == "owner" else uuid.uuid4().hex
    point = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) % sum(v.weight for v in variants)
    for variant in variants:
        if point < variant.weight:
            break
        point -= variant.weight
    return Choice(experiment.id, experiment.name, variant.id, variant.name, variant.template or template,
                  experiment.agent if variant.agent else "", variant.agent)


def assignment_record(*, plan_id: uuid.UUID, owner_id: int, choice: Choice) -> None:
    """Record the plan's variant; runs in the transaction that creates the plan."""
    Assignment.objects.create(plan_id=plan_id, owner_id=owner_id, experiment_id=choice.experiment_id,
                              variant_id=choice.variant_id)
    log.info("experiments.plan.assigned", extra={"plan_id": str(plan_id), "experiment": choice.experiment,
                                                 "variant": choice.variant})


# --- scoring and the stop rule ---------------------------------------------------------------------------


def experiments_evaluate(*, limit: int = 500) -> dict[str, int]:
    """Sync the file, score the plans that ended since the last run (cost, tokens, latency, outcome,
    approvals) and send each succeeded one to the judge (``experiments.judge`` on the agents queue), then
    apply every running experiment's stop rule to the scores so far. Idempotent."""
    try:
        experiments_sync()
    except config.ExperimentConfigError as exc:
        log.error("experiments.file_invalid", extra={"error": exc.message})
    scored = _score_ended(limit=limit)
    stopped = 0
    for experiment in Experiment.objects.filter(status=Status.RUNNING):
        stopped += len(stop_rule_apply(experiment=experiment))
    return {"scored": scored, "stopped": stopped}


def _score_ended(*, limit: int) -> int:
    pending = list(Assignment.objects.filter(scored_at__isnull=True).select_related("experiment")
                   .order_by("created_at")[:limit])
    if not pending or not _readers:
        return 0
    outcomes = {o.plan_id: o for o in _readers[0]([a.plan_id for a in pending])}
    decisions = approvals.approval_outcomes(plan_ids=list(outcomes))
    scored, to_judge = 0, []
    for assignment in pending:
        outcome = outcomes.get(assignment.plan_id)
        if outcome is None:
            continue  # still running
        if Assignment.objects.filter(id=assignment.id, scored_at__isnull=True).update(
                scored_at=timezone.now(), outcome=outcome.status, cost=outcome.cost, tokens=outcome.tokens,
                latency=outcome.latency, approval=decisions.get(outcome.plan_id, "")):
            scored += 1
            if outcome.status == "succeeded" and assignment.experiment.judge_agent:
                to_judge.append(assignment.id)
    # Judges whose message was lost (or whose judge failed) are asked again, a few times at most.
    stale = timezone.now() - timedelta(seconds=settings.EXPERIMENTS_JUDGE_RETRY_AFTER)
    to_judge += list(Assignment.objects.filter(outcome="succeeded", judge_score__isnull=True, scored_at__lt=stale,
                                               judge_tries__lt=JUDGE_MAX_TRIES)
                     .exclude(experiment__judge_agent="").values_list("id", flat=True)[:limit])
    for assignment_id in to_judge:
        # The judge is an LLM call: it runs on the agents queue, never in the scheduler's pool.
        current_app.send_task(JUDGE_TASK, args=(assignment_id,), queue=Queue.AGENTS, ignore_result=True)
    return scored


def assignment_judge(*, assignment_id: int) -> float | None:
    """Ask the experiment's judge to score one scored, succeeded plan; store the score once. A duplicate
    delivery finds it scored. Calls an LLM: must not run inside a transaction."""
    assignment = (Assignment.objects.filter(id=assignment_id, outcome="succeeded", judge_score__isnull=True)
                  .select_related("experiment").first())
    if assignment is None or not _readers:
        return None
    Assignment.objects.filter(id=assignment_id).update(judge_tries=F("judge_tries") + 1)
    outcome = next(iter(_readers[0]([assignment.plan_id])), None)
    if outcome is None:
        return None
    experiment = assignment.experiment
    score = judge.judge_score(agent=experiment.judge_agent, rubric=experiment.rubric, plan_id=outcome.plan_id,
                              request=outcome.request, result=outcome.result)
    if score is not None:
        Assignment.objects.filter(id=assignment_id, judge_score__isnull=True).update(judge_score=score)
    return score


def metric_values(metric: str, assignments: list[Assignment]) -> list[float]:
    """One number per scored plan for ``metric``; plans that say nothing about it are left out."""
    if metric == "judge_score":
        return [a.judge_score for a in assignments if a.judge_score is not None]
    if metric == "cost":
        return [float(a.cost) for a in assignments if a.cost is not None]
    if metric == "tokens":
        return [float(a.tokens) for a in assignments if a.tokens is not None]
    if metric == "latency":
        return [a.latency for a in assignments if a.latency is not None]
    if metric == "failure_rate":
        return [float(a.outcome == "failed") for a in assignments if a.outcome in ("succeeded", "failed")]
    if metric == "approval_rate":
        return [float(a.approval == "approved") for a in assignments if a.approval]
    raise ValueError(f"unknown metric {metric!r}")


def stop_rule_apply(*, experiment: Experiment) -> list[Variant]:
    """Stop each running variant that is significantly worse than another running one on the experiment's
    stop metric (one-sided Welch t-test at ``stop_alpha``, both with at least ``stop_min_samples`` scored
    plans). The last running variant is never stopped. Each stop is recorded once, as an
    ``experiment.variant_stopped`` event and a log line."""
    metric, higher = experiment.stop_metric, HIGHER_IS_BETTER[experiment.stop_metric]
    running = list(experiment.variants.filter(status=Status.RUNNING).order_by("name"))
    scored = list(Assignment.objects.filter(experiment=experiment, scored_at__isnull=False))
    samples = {v.id: metric_values(metric, [a for a in scored if a.variant_id == v.id]) for v in running}
    stopped: list[Variant] = []
    for variant in running:
        others = [v for v in running if v.id != variant.id and v not in stopped]
        if not others:
            break
        mine = samples[variant.id]
        for other in others:
            theirs = samples[other.id]
            if min(len(mine), len(theirs)) < experiment.stop_min_samples:
                continue
            p = stats.p_worse(mine, theirs, higher_is_better=higher)
            if p is not None and p < experiment.stop_alpha and _stop(variant, other, metric, p, mine, theirs):
                stopped.append(variant)
                break
    return stopped


def _stop(variant: Variant, other: Variant, metric: str, p: float, mine: list[float], theirs: list[float]) -> bool:
    reason = (f"significantly worse than {other.name!r} on {metric}: mean {sum(mine) / len(mine):.4g} vs "
              f"{sum(theirs) / len(theirs):.4g}, one-sided Welch t-test p = {p:.3g}")
    data = {"metric": metric, "against": other.name, "p_value": p, "n": len(mine), "n_against": len(theirs),
            "mean": sum(mine) / len(mine), "mean_against": sum(theirs) / len(theirs),
            "alpha": variant.experiment.stop_alpha}
    with transaction.atomic():
        moved = Variant.objects.filter(id=variant.id, status=Status.RUNNING).update(
            status=Status.STOPPED, stopped_at=timezone.now(), stopped_reason=reason)
        if not moved:
            return False
        ExperimentEvent.objects.create(experiment_id=variant.experiment_id, variant=variant, type=VARIANT_STOPPED,
                                       data={"variant": variant.name, **data})
    log.warning("experiments.variant_stopped", extra={"experiment": variant.experiment.name,
                                                      "variant": variant.name, **data})
    return True
