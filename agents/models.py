"""No tables of its own: agents live in agents.yaml and their shared state in Redis. ``AgentBoard`` is an
unmanaged model only so the admin has an "Agents" page (see agents/admin.py)."""

from __future__ import annotations

from django.db import models


class AgentBoard(models.Model):
    class Meta:
        managed = False
        verbose_name = "agent"
        verbose_name_plural = "agents"
        default_permissions = ("view", "change")  # change: may reset a circuit breaker
