"""Working memory: a plan's scratchpad, safe under parallel writers (versioned compare-and-set)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection

from memory import api
from memory.errors import WorkingConflict

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_writers_appending_to_one_entry_lose_nothing(user: Any) -> None:
    owner, plan_id = api.Owner(user.pk), uuid.uuid4()
    writers, appends = 8, 10
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(appends):
                api.working_update(owner=owner, plan_id=plan_id, name="findings", written_by=f"w{n}",
                                   change=lambda items, n=n, i=i: [*(items or []), f"w{n}-{i}"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    entry = api.working_read(owner=owner, plan_id=plan_id)["findings"]
    assert sorted(entry.value) == sorted(f"w{n}-{i}" for n in range(writers) for i in range(appends))
    assert entry.version == writers * appends


def test_a_stale_compare_and_set_is_refused_with_the_current_version(user: Any) -> None:
    owner, plan_id = api.Owner(user.pk), uuid.uuid4()
    assert api.working_set(owner=owner, plan_id=plan_id, name="n", value=1, expected_version=0) == 1
    assert api.working_set(owner=owner, plan_id=plan_id, name="n", value=2, expected_version=1) == 2

    with pytest.raises(WorkingConflict) as refused:
        api.working_set(owner=owner, plan_id=plan_id, name="n", value=3, expected_version=1)

    assert refused.value.current_version == 2 and refused.value.code == "memory.conflict"
    assert api.working_read(owner=owner, plan_id=plan_id)["n"].value == 2


def test_another_owner_cannot_write_or_read_a_plans_scratchpad(user: Any, django_user_model: Any) -> None:
    other = django_user_model.objects.create_user(username="intruder")
    plan_id = uuid.uuid4()
    api.working_set(owner=api.Owner(user.pk), plan_id=plan_id, name="secret", value="mine")

    with pytest.raises(WorkingConflict):
        api.working_set(owner=api.Owner(other.pk), plan_id=plan_id, name="secret", value="theirs")

    assert api.working_read(owner=api.Owner(other.pk), plan_id=plan_id) == {}
    assert api.working_read(owner=api.Owner(user.pk), plan_id=plan_id)["secret"].value == "mine"
