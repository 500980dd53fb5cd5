"""Plans, their steps, and the append-only record of what happened to them.

State changes go through ``orchestrator.services`` only; there is no logic in ``save()`` or signals.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from orchestrator.states import PlanStatus, StepStatus


class Spending(models.Model):
    """Running totals of agent calls and their limits (None: no limit), kept by a plan and by a person.

    Over a budget a step waits for approval to exceed it; a hard cap is never passed (services._gate)."""

    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_used = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    budget_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    budget_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cap_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    cap_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    class Meta:
        abstract = True

    def limited(self) -> bool:
        return any(limit is not None for limit in (self.budget_tokens, self.budget_cost, self.cap_tokens,
                                                   self.cap_cost))


class Plan(Spending):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="plans")
    # The tenant that owns it: its owner's organisation when it was created (services.plan_create). Null only
    # for rows older than organisations until the data migration fills them; reads never match a null.
    organisation = models.ForeignKey("organisations.Organisation", on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="plans")
    request = models.TextField()
    template = models.CharField(max_length=100, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=PlanStatus.choices, default=PlanStatus.PLANNING)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The LLM planner's run, claimed like a step's (services/plans.py): the attempt its message carries, when
    # it was sent, whether the send failed, how often it was sent again, and the lease of the worker at it.
    planning_attempt = models.PositiveIntegerField(default=0)
    planning_queued_at = models.DateTimeField(null=True, blank=True)
    planning_unsent = models.BooleanField(default=False)
    planning_requeues = models.PositiveIntegerField(default=0)
    planning_worker = models.CharField(max_length=255, blank=True)
    planning_deadline_at = models.DateTimeField(null=True, blank=True)
    planning_lease_expires_at = models.DateTimeField(null=True, blank=True)
    # issue 10: some step of it has a fan_out (services/growth.py looks for one only then: no query per step)
    # (or asks the planner to extend the plan after it: ``replan``)
    has_fan_out = models.BooleanField(default=False)
    # issue 10: the plan's structure version, one more at every change of its steps' set, dependencies or
    # inputs (an edit, a growth, a retry, a re-run; not a status change). An edit may name the version it
    # was made against (If-Match): if the plan changed since, it is refused (plan.edit_conflict).
    version = models.PositiveIntegerField(default=0)
    # How many times the planner may extend this plan while it runs (steps with ``replan``: services/growth.py)
    max_replans = models.PositiveSmallIntegerField(default=2)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["organisation", "-created_at"], name="plan_org_created"),
            models.Index(fields=["status"]),
        ]

    def __str__(self) -> str:
        return f"{self.request[:60]} ({self.status})"


class Step(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index on the plan alone (migration 0014): the (plan, key) unique constraint's index serves every read by
    # plan, and a second one misled the planner into reading a whole plan for a lookup by key.
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="steps", db_index=False)
    key = models.CharField(max_length=100)
    agent = models.CharField(max_length=100)
    input = models.JSONField(default=dict, blank=True)
    depends_on = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    # Kept by the scheduler (services/readiness.py): the keys of the steps that depend on this one, and how
    # many of its own dependencies have not succeeded yet (of a wide step, how many of its StepSlot counters are
    # not at 0). A step's success decrements its dependents' counts in the statement that records it; the
    # dependent whose count reaches 0 is ready.
    dependents = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    waiting_on = models.PositiveIntegerField(default=0)
    # A scheduling hint: how many steps its longest chain of dependents holds, itself included (1 for a sink),
    # among the steps it was added with (readiness.ranks_of). Of the steps one success frees, the worker runs
    # the one ranked highest itself and sends the others: the critical path first. It never decides whether
    # a step runs.
    rank = models.IntegerField(default=1, db_default=1)  # see migration 0013
    # Inputs to the approval policies: the plan can raise a step's risk or ask for a gate, never lower
    # or remove what policy requires (approvals.policies).
    risk = models.CharField(max_length=8, default="low")
    approval_requested = models.BooleanField(default=False)
    # issue 10: when it succeeds, one step per item of a list in its output (planning.FanOutModel)
    fan_out = models.JSONField(null=True, blank=True)
    # issue 10: when it succeeds, the planner is asked to extend the plan after it (plan-and-execute)
    replan = models.BooleanField(default=False)
    # Its success may add steps whatever its output says (a fan_out, or a template trigger after it): recorded
    # under the plan's exclusive lock (services/growth.py), never on the shared fast path.
    grows = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    # Incremented each time the step is queued; a message carries (step id, attempt), and only the
    # delivery whose attempt matches may claim the step.
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    timeout = models.FloatField(default=120.0)  # seconds one try of its agent may take
    deadline = models.FloatField(default=420.0)  # seconds a whole run may take: every try, wait and backoff
    # How often the current attempt's message was sent again, and whether its last send failed (the
    # reconciler sends it at its next run): services/reconcile.py.
    requeues = models.PositiveIntegerField(default=0)
    unsent = models.BooleanField(default=False)
    output = models.JSONField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True)  # {"prompt_tokens", "completion_tokens", "model"}
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    # The upper bound estimated when it became ready: reserved against budgets while it is queued or running.
    estimated_tokens = models.PositiveBigIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)  # set by the claim: started + deadline
    lease_expires_at = models.DateTimeField(null=True, blank=True)  # renewed by its worker's heartbeat

    class Meta:
        ordering = ["queued_at", "key"]
        constraints = [models.UniqueConstraint(fields=["plan", "key"], name="step_unique_key_per_plan")]
        indexes = [
            # The reconciler's scan of expired leases. Partial (migration 0017): it holds only the running steps,
            # not every step that ever ran, and a step's success, whose row no longer matches, writes no entry into
            # it (each write of a step's status adds an entry to every index whose rows it matches). Its scan of
            # stale queued steps reads the pull's index below (the queued steps alone, in flight as well).
            models.Index(fields=["lease_expires_at"], condition=models.Q(status="running"), name="step_running_lease"),
            # A worker's pull: each of its queue's agents' oldest queued step after the last it took, in the
            # order (queued_at, id) (transitions.steps_transition).
            models.Index(fields=["agent", "queued_at", "id"], condition=models.Q(status="queued"),
                         name="step_queued_by_agent"),
            # What may run next in a plan, and whether it has anything left (bounded, whatever its size).
            models.Index(fields=["plan"], condition=models.Q(status="pending", waiting_on=0), name="step_ready"),
            # Whether a plan has a step left open. Its predicate also asks for a plan, which only a statement that
            # names one implies (``plan_id = ...`` is strict): a pull, which names none, could otherwise read it whole
            # (every open step of every plan, per pull), and did whenever the statistics made it look the cheaper
            # index (tests/orchestrator/test_statistics.py).
            models.Index(fields=["plan"], condition=~models.Q(status__in=["succeeded", "failed", "rejected",
                                                                          "cancelled"]) & models.Q(plan__isnull=False),
                         name="step_open"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class StepSlot(models.Model):
    """A share of a wide step's dependencies (services/readiness.py): of the dependencies whose keys hash to
    ``slot``, how many have not succeeded. A step with more than ``readiness.WIDE`` dependencies counts them here,
    and its own ``waiting_on`` counts its slots that are not at 0: a success decrements its slot's row, and only
    the success that empties a slot touches the step's row. So the many ends of a wide join wait on one row
    lock, held until commit, SLOTS at a time instead of one at a time."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="+", db_index=False)
    step_key = models.CharField(max_length=100)
    slot = models.PositiveSmallIntegerField()
    waiting = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "step_key", "slot"], name="stepslot_unique")]

    def __str__(self) -> str:
        return f"{self.step_key}[{self.slot}]: {self.waiting}"


class PlanEvent(models.Model):
    """Append-only: what happened to a plan and its steps, in order (the id is monotonic).

    It is the audit trail and the source of the live progress stream.
    """

    id = models.BigAutoField(primary_key=True)
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="events")
    step_key = models.CharField(max_length=100, blank=True)
    type = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["plan", "id"])]

    def __str__(self) -> str:
        return f"{self.type} {self.step_key}".strip()


class UserBudget(Spending):
    """A person's running totals across all their plans, and their budgets."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget")

    def __str__(self) -> str:
        return f"budget of {self.user}"


class OrganisationBudget(models.Model):
    """An organisation's budgets and hard caps across all its plans (issue 11; None: no limit).

    No running totals here: what an organisation has spent is the sum of its plans' totals, read when a gate
    judges a step (services/budgets.py), so no step end has to update one row shared by the whole tenant."""

    organisation = models.OneToOneField("organisations.Organisation", on_delete=models.CASCADE,
                                        related_name="budget")
    budget_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    budget_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    cap_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    cap_cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    def __str__(self) -> str:
        return f"budget of {self.organisation}"

    def limited(self) -> bool:
        return any(limit is not None for limit in (self.budget_tokens, self.budget_cost, self.cap_tokens,
                                                   self.cap_cost))
