"""Hot and cold tiers: compaction makes idle memories cold (summary + halfvec), they stay searchable, and a
recall promotes them back to hot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from memory import api
from memory.models import MemoryItem

pytestmark = pytest.mark.django_db(transaction=True)

LONG = ("Solid-state batteries use a solid electrolyte instead of a liquid one. "
        "They promise higher energy density and better safety. Sulfide and oxide electrolytes are the main "
        "candidates for solid batteries. Manufacturing solid electrolyte batteries at scale remains hard, and "
        "dendrites can still grow through a solid electrolyte under fast charging. Toyota and QuantumScape "
        "announced pilot lines for solid-state batteries; costs per kWh are still well above lithium-ion ones.")


def test_a_compacted_cold_memory_is_still_found_and_a_recall_promotes_it(user: Any) -> None:
    owner = api.Owner(user.pk)
    idle = api.memory_add(owner=owner, text=LONG, kind="note").memory
    fresh = api.memory_add(owner=owner, text="Lisbon trams are yellow.", kind="note").memory
    MemoryItem.objects.filter(id=idle.id).update(updated_at=timezone.now() - timedelta(days=60))

    counts = api.compact()

    cold = MemoryItem.objects.get(id=idle.id)
    assert counts["cooled"] == 1
    assert cold.tier == "cold" and cold.embedding is None and cold.embedding_cold is not None
    assert MemoryItem.objects.get(id=fresh.id).tier == "hot"
    summary = api.memory_get(owner=owner, memory_id=idle.id).text
    assert summary.startswith("Solid-state batteries use a solid electrolyte") and len(summary) <= 280

    hits = api.memory_search(owner=owner, query="solid electrolyte batteries", k=1, mode="vector")
    assert [h.memory.id for h in hits] == [idle.id] and hits[0].memory.tier == "cold"

    assembled = api.context_assemble(owner=owner, plan_id=None, step_key="s", agent="a",
                                     step_input={"prompt": "solid electrolyte batteries"},
                                     dependencies={}, budget_tokens=2000)

    assert str(idle.id) in [r["id"] for r in assembled.recalled], assembled.report()["cut"]
    promoted = MemoryItem.objects.get(id=idle.id)
    assert promoted.tier == "hot" and promoted.embedding is not None and promoted.embedding_cold is None
    assert promoted.recall_count == 1
    assert api.compact()["cooled"] == 0  # recalled recently: stays hot


def test_expired_memories_are_deleted_by_compaction(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.retention_set(owner=owner, ttl_days=1)
    api.memory_add(owner=owner, text="short-lived", kind="note")

    assert api.compact(now=timezone.now() + timedelta(days=2))["expired"] == 1
    assert api.memory_list(owner=owner) == []
