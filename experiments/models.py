"""Experiments: variants of an agent strategy, which plan got which, and how each plan scored.

Plans live in the orchestrator; this app keeps only their ids (it never imports the orchestrator's
models). State changes go through ``experiments.services``.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

METRICS = ("judge_score", "cost", "tokens", "latency", "failure_rate", "approval_rate")
# Which way is better, per metric (the stop rule tests for "significantly worse").
HIGHER_IS_BETTER = {"judge_score": True, "cost": False, "tokens": False, "latency": False,
                    "failure_rate": False, "approval_rate": True}


class Sticky(models.TextChoices):
    OWNER = "owner"  # every plan of a person gets the same variant (a hash of experiment and owner id)
    PLAN = "plan"  # each plan drawn on its own


class Status(models.TextChoices):
    RUNNING = "running"
    STOPPED = "stopped"


class Experiment(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    template = models.CharField(max_length=100, blank=True,
                                help_text="plans from this workflow template take part; empty: every plan")
    agent = models.CharField(max_length=100, blank=True,
                             help_text="the agent whose calls prompt / model variants change, and that agent "
                                       "variants replace")
    sticky = models.CharField(max_length=5, choices=Sticky.choices, default=Sticky.OWNER)
    judge_agent = models.CharField(max_length=100, blank=True, default="judge",
                                   help_text="scores each succeeded plan's result; empty: no judge")
    rubric = models.TextField(blank=True, default="Is the answer correct, complete, clear and sourced?")
    stop_metric = models.CharField(max_length=16, choices=[(m, m) for m in METRICS], default="judge_score")
    stop_alpha = models.FloatField(default=0.05)
    stop_min_samples = models.PositiveIntegerField(default=10)
    from_file = models.BooleanField(default=False, help_text="defined in experiments.yaml (synced from it)")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    """One strategy: any of a system prompt, a model (for the experiment's agent), another agent in its
    place, or a whole other template. A variant with none of them is the control."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    name = models.SlugField(max_length=100)
    weight = models.PositiveIntegerField(default=1, help_text="share of traffic, relative to the others")
    system_prompt = models.TextField(blank=True)
    model = models.CharField(max_length=100, blank=True)
    agent = models.CharField(max_length=100, blank=True)
    template = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stopped_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["experiment", "name"]
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="variant_unique_name")]

    def __str__(self) -> str:
        return f"{self.experiment.name}/{self.name}"


class Assignment(models.Model):
    """A plan's variant (one per plan), and once the plan has ended, its scores."""

    plan_id = models.UUIDField(unique=True)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="assignments")
    owner_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    scored_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True)  # the plan's final status
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    tokens = models.PositiveBigIntegerField(null=True, blank=True)
    latency = models.FloatField(null=True, blank=True, help_text="seconds from creation to the end")
    approval = models.CharField(max_length=16, blank=True,
                                help_text="approved | edited | rejected | timed_out; empty: no approval")
    judge_score = models.FloatField(null=True, blank=True)
    judge_tries = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["experiment", "scored_at"])]


class ExperimentEvent(models.Model):
    """Append-only: variants stopped, experiments synced from the file."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="events")
    variant = models.ForeignKey(Variant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    type = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
