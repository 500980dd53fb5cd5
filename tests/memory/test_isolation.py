"""Owner A never sees owner B's memory: search, list, API, MCP and context assembly."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from mcp import Client

from memory import api
from orchestrator.mcp_server import build_server
from tests.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)

B_SECRET = "Owner B keeps the quokka launch codes in Zanzibar."


def _two_owners(django_user_model: Any) -> tuple[Any, Any, api.Memory]:
    a = django_user_model.objects.create_user(username=f"a{uuid.uuid4().hex[:6]}")
    b = django_user_model.objects.create_user(username=f"b{uuid.uuid4().hex[:6]}")
    api.memory_add(owner=api.Owner(a.pk), text="Owner A likes trams in Lisbon.", kind="fact")
    secret = api.memory_add(owner=api.Owner(b.pk), text=B_SECRET, kind="fact").memory
    api.memory_add(owner=api.Owner(b.pk), text=B_SECRET.replace("Owner B", "Also B"), kind="note")
    return a, b, secret


def test_search_list_and_context_assembly_are_scoped_to_the_owner(django_user_model: Any) -> None:
    a, b, secret = _two_owners(django_user_model)
    owner_a = api.Owner(a.pk)

    for mode in ("hybrid", "vector", "text"):
        hits = api.memory_search(owner=owner_a, query="quokka launch codes Zanzibar", k=20, mode=mode)
        assert all("quokka" not in h.memory.text for h in hits), mode
    assert [m.text for m in api.memory_list(owner=owner_a)] == ["Owner A likes trams in Lisbon."]
    with pytest.raises(api.MemoryNotFound):
        api.memory_get(owner=owner_a, memory_id=secret.id)
    with pytest.raises(api.MemoryNotFound):
        api.memory_delete(owner=owner_a, memory_id=secret.id)
    assembled = api.context_assemble(owner=owner_a, plan_id=None, step_key="s", agent="x", dependencies={},
                                     step_input={"prompt": "Where are the quokka launch codes in Zanzibar?"},
                                     budget_tokens=4000)
    assert "quokka" not in repr(assembled.context) and "quokka" not in repr(assembled.report())
    # B, asking the same, does recall it: the filter is the owner, not the query.
    assembled_b = api.context_assemble(owner=api.Owner(b.pk), plan_id=None, step_key="s", agent="x",
                                       dependencies={}, budget_tokens=4000,
                                       step_input={"prompt": "Where are the quokka launch codes in Zanzibar?"})
    assert "quokka" in repr(assembled_b.context)


def test_the_api_answers_404_for_another_owners_memory_and_never_lists_it(django_user_model: Any) -> None:
    a, b, secret = _two_owners(django_user_model)
    client = api_client(a)

    listed = client.get("/api/memory/")
    searched = client.post("/api/memory/search/", {"query": "quokka launch codes"}, format="json")
    detail = client.get(f"/api/memory/{secret.id}/")
    deleted = client.delete(f"/api/memory/{secret.id}/")

    assert listed.status_code == 200 and [m["text"] for m in listed.json()["results"]] == [
        "Owner A likes trams in Lisbon."]
    assert searched.status_code == 200 and "quokka" not in searched.content.decode()
    assert detail.status_code == 404 and detail.json()["error"]["code"] == "not_found"
    assert deleted.status_code == 404
    assert api.memory_get(owner=api.Owner(b.pk), memory_id=secret.id).text == B_SECRET


def test_the_api_adds_searches_and_deletes_and_refuses_bad_input(user: Any) -> None:
    client = api_client(user)

    added = client.post("/api/memory/", {"text": "Lisbon trams are yellow."}, format="json")
    again = client.post("/api/memory/", {"text": "Lisbon's trams are yellow!"}, format="json")
    found = client.post("/api/memory/search/", {"query": "yellow trams", "k": 3, "mode": "text"}, format="json")
    bad = [client.post("/api/memory/", {"text": ""}, format="json"),
           client.post("/api/memory/", {"text": "x", "colour": "red"}, format="json"),
           client.post("/api/memory/search/", {"query": "x", "k": 0}, format="json"),
           client.get("/api/memory/?kind=dream"), client.get("/api/memory/not-a-uuid/")]
    gone = client.delete(f"/api/memory/{added.json()['id']}/")

    assert added.status_code == 201 and added.json()["action"] == "add"
    assert again.status_code == 200 and again.json()["action"] in ("update", "noop")
    assert [r["id"] for r in found.json()["results"]] == [added.json()["id"]]
    assert [r.status_code for r in bad] == [400, 400, 400, 400, 404]
    assert all("code" in r.json()["error"] for r in bad)
    assert gone.status_code == 204 and client.get("/api/memory/").json()["results"] == []


def _mcp(user: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def session() -> list[Any]:
        async with Client(build_server(stdio_user=user)) as client:
            return [await client.call_tool(name, args) for name, args in calls]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, session).result()


def test_mcp_memory_tools_are_scoped_to_the_caller(django_user_model: Any) -> None:
    a, b, _ = _two_owners(django_user_model)

    added, searched, bad = _mcp(a, [("memory_add", {"text": "Owner A's cat is called Quokka."}),
                                    ("memory_search", {"query": "quokka launch codes Zanzibar", "k": 10}),
                                    ("memory_search", {"query": "", "k": 10})])

    assert added.structured_content["action"] == "add"
    texts = [r["text"] for r in searched.structured_content["results"]]
    assert "Owner A's cat is called Quokka." in texts and not any("Zanzibar" in t for t in texts)
    assert bad.is_error and "memory.invalid" in bad.content[0].text
    assert len(api.memory_list(owner=api.Owner(b.pk))) == 2
