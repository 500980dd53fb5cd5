"""Deleting a user's memory leaves nothing: rows, working memory and cached context."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection

from memory import api, cache
from memory.models import MemoryItem, MemoryRetention, WorkingEntry

pytestmark = pytest.mark.django_db(transaction=True)


def test_forgetting_an_owner_leaves_nothing_anywhere(user: Any, django_user_model: Any) -> None:
    owner = api.Owner(user.pk)
    other = api.Owner(django_user_model.objects.create_user(username="keeper").pk)
    for who in (owner, other):
        api.memory_add(owner=who, text="Lisbon trams are yellow.", kind="fact")
        api.working_set(owner=who, plan_id=uuid.uuid4(), name="n", value="v")
        api.context_assemble(owner=who, plan_id=None, step_key="s", agent="a", step_input={"prompt": "Lisbon trams"},
                             dependencies={}, budget_tokens=1000)  # fills the Redis cache
    api.retention_set(owner=owner, ttl_days=30)
    assert cache.keys_of(owner) and cache.keys_of(other)

    api.owner_forget(owner=owner)

    with connection.cursor() as cursor:
        for model in (MemoryItem, WorkingEntry, MemoryRetention):
            cursor.execute(f"SELECT count(*) FROM {model._meta.db_table} WHERE owner_id = %s", [user.pk])
            assert cursor.fetchone()[0] == 0, model.__name__
    assert cache.keys_of(owner) == []
    assert api.memory_search(owner=owner, query="Lisbon trams", k=5) == []
    assert len(api.memory_list(owner=other)) == 1 and cache.keys_of(other)  # the other owner keeps theirs


def test_deleting_one_memory_removes_it_from_search(user: Any) -> None:
    owner = api.Owner(user.pk)
    item = api.memory_add(owner=owner, text="Lisbon trams are yellow.", kind="note").memory

    api.memory_delete(owner=owner, memory_id=item.id)

    assert api.memory_search(owner=owner, query="Lisbon trams", k=5) == []
