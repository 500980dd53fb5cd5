"""Organisations (tenants) and who belongs to them. Writes go through ``organisations.services``; other apps
read through ``organisations.api``."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    MEMBER = "member"  # starts plans, reads the organisation's plans if it shares them
    ADMIN = "admin"  # also cancels and retries any plan of the organisation, reads its audit trail


class Organisation(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    # Do members read each other's plans? Organisations created on purpose do (a team); the default
    # organisation that holds every user of an install without tenants does not, so such an install keeps
    # its per-user isolation unchanged.
    shared_plans = models.BooleanField(default=True, help_text="members may read each other's plans")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's one organisation and their role in it (a user is in exactly one)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user} in {self.organisation} ({self.role})"
