"""Semantic memory: a near-duplicate fact updates the existing one instead of adding another."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from memory import api
from memory.models import MemoryItem

pytestmark = pytest.mark.django_db(transaction=True)

FACT = "The Eiffel tower is 330 metres tall and stands in Paris."


def test_a_near_duplicate_fact_updates_instead_of_adding(user: Any) -> None:
    owner = api.Owner(user.pk)
    first = api.memory_add(owner=owner, text=FACT, kind="fact")

    second = api.memory_add(owner=owner, text="The Eiffel tower is 330 metres high and stands in Paris.", kind="fact")
    same = api.memory_add(owner=owner, text="the eiffel tower is 330 metres HIGH and stands in paris", kind="fact")
    other = api.memory_add(owner=owner, text="Solid-state batteries use a solid electrolyte.", kind="fact")

    assert first.action == "add"
    assert second.action == "update" and second.memory.id == first.memory.id
    assert second.similarity is not None and 0.75 <= second.similarity < 0.97
    assert second.memory.text.endswith("metres high and stands in Paris.") and second.memory.revisions == 1
    assert same.action == "noop" and same.memory.id == first.memory.id
    assert other.action == "add" and other.memory.id != first.memory.id
    assert MemoryItem.objects.filter(owner=user, kind="fact").count() == 2


def test_two_writers_of_the_same_fact_at_once_leave_one_fact(user: Any) -> None:
    owner = api.Owner(user.pk)
    barrier = threading.Barrier(4)
    actions: list[str] = []

    def add(text: str) -> None:
        barrier.wait(timeout=10)
        actions.append(api.memory_add(owner=owner, text=text, kind="fact").action)
        connection.close()

    texts = [FACT, FACT, FACT.replace("tall", "high"), FACT.replace("tall", "high")]
    threads = [threading.Thread(target=add, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(actions).count("add") == 1 and len(actions) == 4
    assert MemoryItem.objects.filter(owner=user, kind="fact").count() == 1


def test_notes_are_never_deduplicated(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.memory_add(owner=owner, text=FACT, kind="note")
    assert api.memory_add(owner=owner, text=FACT, kind="note").action == "add"
    assert MemoryItem.objects.filter(owner=user, kind="note").count() == 2
