"""Reads: experiments and their report (per variant, with 95% intervals from experiments/stats.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments import stats
from experiments.models import Assignment, Experiment, ExperimentEvent
from experiments.services import metric_values

APPROVAL_OUTCOMES = ("approved", "edited", "rejected", "timed_out")


@dataclass(frozen=True)
class VariantReport:
    name: str
    status: str
    weight: int
    plans: int  # assigned
    scored: int  # ended and scored
    cost: stats.Interval | None  # USD per plan
    tokens: stats.Interval | None
    latency: stats.Interval | None  # seconds per plan
    failure_rate: stats.Interval | None  # Wilson
    approvals: dict[str, int] = field(default_factory=dict)  # approved (as is) / edited / rejected / timed_out
    approved_as_is: stats.Interval | None = None  # Wilson, among plans with a decided approval
    judge_score: stats.Interval | None = None
    stopped_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        def interval(value: stats.Interval | None) -> dict[str, Any] | None:
            return value.as_dict() if value is not None else None

        return {"name": self.name, "status": self.status, "weight": self.weight, "plans": self.plans,
                "scored": self.scored, "cost": interval(self.cost), "tokens": interval(self.tokens),
                "latency": interval(self.latency), "failure_rate": interval(self.failure_rate),
                "approvals": self.approvals, "approved_as_is": interval(self.approved_as_is),
                "judge_score": interval(self.judge_score), "stopped_reason": self.stopped_reason}


@dataclass(frozen=True)
class Report:
    experiment: Experiment
    variants: list[VariantReport]
    events: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        e = self.experiment
        return {"id": e.id, "name": e.name, "status": e.status, "template": e.template, "agent": e.agent,
                "sticky": e.sticky, "stop": {"metric": e.stop_metric, "alpha": e.stop_alpha,
                                             "min_samples": e.stop_min_samples},
                "confidence": stats.CONFIDENCE, "variants": [v.as_dict() for v in self.variants],
                "events": self.events}


def experiments_all() -> list[Experiment]:
    return list(Experiment.objects.prefetch_related("variants"))


def experiment_report(experiment: Experiment) -> Report:
    """Three queries, whatever the number of plans."""
    assignments = list(Assignment.objects.filter(experiment=experiment))
    variants = []
    for variant in experiment.variants.order_by("name"):
        mine = [a for a in assignments if a.variant_id == variant.id]
        scored = [a for a in mine if a.scored_at is not None]
        failures = metric_values("failure_rate", scored)
        decided = [a.approval for a in scored if a.approval]
        variants.append(VariantReport(
            name=variant.name, status=variant.status, weight=variant.weight, plans=len(mine), scored=len(scored),
            cost=stats.mean_interval(metric_values("cost", scored)),
            tokens=stats.mean_interval(metric_values("tokens", scored)),
            latency=stats.mean_interval(metric_values("latency", scored)),
            failure_rate=stats.proportion_interval(int(sum(failures)), len(failures)),
            approvals={outcome: decided.count(outcome) for outcome in APPROVAL_OUTCOMES},
            approved_as_is=stats.proportion_interval(decided.count("approved"), len(decided)),
            judge_score=stats.mean_interval(metric_values("judge_score", scored)),
            stopped_reason=variant.stopped_reason))
    events = [{"type": ev.type, "data": ev.data, "created_at": ev.created_at.isoformat()}
              for ev in ExperimentEvent.objects.filter(experiment=experiment)]
    return Report(experiment, variants, events)
