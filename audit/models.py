from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """One thing that happened, kept for good: no foreign keys (nothing cascades it away with its plan or
    user), and the database refuses UPDATE and DELETE of a row (a trigger, migration 0001)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # a user's id, not a key to it
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=100)  # "api.post", "admin.post", "step.succeeded", "approval.decided"
    target = models.CharField(max_length=500, blank=True, default="")  # a path, or "step <key>"
    plan_id = models.UUIDField(null=True, blank=True, db_index=True)
    # issue 11: the organisation the actor acted in (their own), an id not a key; null for entries written
    # from a plan's events (scoped through their plan) and for those older than organisations.
    organisation_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
