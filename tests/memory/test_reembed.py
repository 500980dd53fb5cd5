"""Changing the embedding dimension (or model) re-embeds every memory, as a command."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from memory import api
from memory.services import _column_dims

pytestmark = pytest.mark.django_db(transaction=True)


def test_reembed_resizes_the_columns_and_search_still_works(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.memory_add(owner=owner, text="Lisbon trams are yellow.", kind="note")
    api.memory_add(owner=owner, text="Solid-state batteries use a solid electrolyte.", kind="note")
    out = io.StringIO()
    try:
        with override_settings(MEMORY_EMBEDDING_DIM=64):
            call_command("memory_reembed", stdout=out)
            assert _column_dims() == 64
            hits = api.memory_search(owner=owner, query="yellow trams", k=1, mode="vector")
            assert [h.memory.text for h in hits] == ["Lisbon trams are yellow."]
    finally:
        call_command("memory_reembed", stdout=io.StringIO())  # back to the suite's 384 dimensions
    assert "re-embedded 2 memories at 64 dimensions (columns resized" in out.getvalue()
    assert _column_dims() == 384
    assert [h.memory.text for h in api.memory_search(owner=owner, query="solid electrolyte", k=1, mode="vector")] == [
        "Solid-state batteries use a solid electrolyte."]
