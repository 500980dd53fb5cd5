"""Memory rows. Content is ciphertext (memory.crypto); the search column holds keyed hashes, not words.

Writes go through memory.services; reads through memory.selectors; other apps use memory.api only.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils import timezone
from pgvector.django import HalfVectorField, HnswIndex, VectorField


class Kind(models.TextChoices):
    EPISODE = "episode"  # what happened: a finished step or plan, summarised
    FACT = "fact"  # semantic memory: a statement, deduplicated by similarity
    NOTE = "note"  # written by a person or an agent as is (no dedup)


class Tier(models.TextChoices):
    HOT = "hot"  # full content, float32 vector in the HNSW index
    COLD = "cold"  # compacted: summary only, halfvec in its own HNSW index


class MemoryItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    agent = models.CharField(max_length=100, blank=True)
    plan_id = models.UUIDField(null=True, blank=True)
    step_key = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=200, blank=True)  # "plan:<id>/step:<key>", "user:<id>", "api"
    content = models.BinaryField()  # Fernet token
    fingerprint = models.CharField(max_length=64)  # keyed hash of the normalised text
    search = SearchVectorField(null=True)  # blind index: tsvector of keyed lexeme hashes
    embedding = VectorField(dimensions=settings.MEMORY_EMBEDDING_DIM, null=True, blank=True)  # hot
    embedding_cold = HalfVectorField(dimensions=settings.MEMORY_EMBEDDING_DIM, null=True, blank=True)  # cold
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.HOT)
    significance = models.FloatField(default=0.5)
    revisions = models.PositiveIntegerField(default=0)  # near-duplicate updates applied
    last_action = models.CharField(max_length=8, default="add")  # add | update (dedup decision)
    recall_count = models.PositiveIntegerField(default=0)
    last_recalled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "kind", "-created_at"], name="memory_owner_kind"),
            models.Index(fields=["expires_at"], name="memory_expires"),
            # The cold arm of a search filters on the owner among cold rows only: without this, the planner
            # walks all of a large owner's rows to find the (few) cold ones.
            models.Index(fields=["owner"], condition=models.Q(embedding_cold__isnull=False), name="memory_cold_owner"),
            GinIndex(fields=["search"], name="memory_search_gin"),
            HnswIndex(name="memory_embedding_hnsw", fields=["embedding"], m=16, ef_construction=64,
                      opclasses=["vector_cosine_ops"]),
            HnswIndex(name="memory_embedding_cold_hnsw", fields=["embedding_cold"], m=16, ef_construction=64,
                      opclasses=["halfvec_cosine_ops"]),
        ]
        constraints = [
            # One episode per finished step / plan (step_key ""): archiving twice is a no-op.
            models.UniqueConstraint(fields=["plan_id", "step_key"], condition=models.Q(kind="episode"),
                                    name="memory_one_episode_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.tier})"


class WorkingEntry(models.Model):
    """One named entry of a plan's scratchpad. ``version`` grows by one on every write: writers
    compare-and-set on it (services.working_set), so parallel writers never lose an update."""

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="working_memory")
    plan_id = models.UUIDField()
    name = models.CharField(max_length=100)
    value = models.BinaryField()  # Fernet token of the JSON value
    version = models.PositiveIntegerField(default=1)
    written_by = models.CharField(max_length=100, blank=True)  # step key
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["plan_id", "name"]
        constraints = [models.UniqueConstraint(fields=["plan_id", "name"], name="working_unique_name")]

    def __str__(self) -> str:
        return f"{self.plan_id}:{self.name} v{self.version}"


class MemoryRetention(models.Model):
    """A person's retention: their memories expire ``ttl_days`` after they are written (0: never)."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memory_retention")
    ttl_days = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"retention of {self.owner}: {self.ttl_days or 'forever'}"
