"""A selective owner (about 0.1 % of the rows) still gets k results, the exact top k, from the HNSW search."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from memory import api, crypto
from memory.models import MemoryItem
from memory.selectors import vector_literal

pytestmark = pytest.mark.django_db(transaction=True)

DIM = 384


def _random_rows(owner_id: int, n: int, filler: bytes) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MemoryItem._meta.db_table} (id, owner_id, kind, agent, step_key, source, content, "
            "fingerprint, embedding, tier, significance, revisions, last_action, recall_count, created_at, updated_at) "
            "SELECT gen_random_uuid(), %s, 'note', '', '', '', %s, '', "
            f"array(SELECT random() - 0.5 FROM generate_series(1, {DIM}) d WHERE d > 0 * g.i)::vector, "
            "'hot', 0.5, 0, 'add', 0, now(), now() FROM generate_series(1, %s) g(i)", [owner_id, filler, n])


def _load(django_user_model: Any) -> tuple[Any, Any, list[float]]:
    """10,000 rows of one owner and 12 of another (0.12 %), random 384-dim vectors."""
    big = django_user_model.objects.create_user(username="big")
    small = django_user_model.objects.create_user(username="small")
    filler = crypto.seal("filler")
    table = MemoryItem._meta.db_table
    with connection.cursor() as cursor:  # bulk load without the index, then build it (much faster)
        cursor.execute("DROP INDEX memory_embedding_hnsw")
    _random_rows(big.pk, 10_000, filler)
    _random_rows(small.pk, 12, filler)
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(f"CREATE INDEX memory_embedding_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
                       "WITH (m = 16, ef_construction = 64)")
        cursor.execute(f"ANALYZE {table}")
    return big, small, [((i * 7919) % 97 - 48) / 48 for i in range(DIM)]


def test_a_selective_owner_still_gets_k_results_and_the_exact_top_k(django_user_model: Any) -> None:
    big, small, query = _load(django_user_model)

    hits = api.memory_search(owner=api.Owner(small.pk), query="", vector=query, k=10, mode="vector")

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")  # the exact answer: a full scan and sort
        cursor.execute(f"SELECT id FROM {MemoryItem._meta.db_table} WHERE owner_id = %s "
                       "ORDER BY embedding <=> %s::vector LIMIT 10", [small.pk, vector_literal(query)])
        exact = [row[0] for row in cursor.fetchall()]
    assert len(hits) == 10
    assert [h.memory.id for h in hits] == exact  # the planner used the owner's btree index: exact


def test_through_the_hnsw_index_a_selective_owner_still_gets_k_results(django_user_model: Any) -> None:
    big, small, query = _load(django_user_model)
    table = MemoryItem._meta.db_table

    def through_hnsw(iterative: bool) -> list[Any]:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")  # no sort node: the planner must walk the HNSW index
            cursor.execute(f"EXPLAIN SELECT id FROM {table} m WHERE m.owner_id = %s ORDER BY m.embedding <=> "
                           "%s::vector LIMIT 10", [small.pk, vector_literal(query)])
            assert "memory_embedding_hnsw" in " ".join(row[0] for row in cursor.fetchall())
            if not iterative:  # what memory_search does not do: a plain HNSW scan, then the owner filter
                cursor.execute(f"SELECT id FROM {table} m WHERE m.owner_id = %s ORDER BY m.embedding <=> "
                               "%s::vector LIMIT 10", [small.pk, vector_literal(query)])
                return cursor.fetchall()
            return api.memory_search(owner=api.Owner(small.pk), query="", vector=query, k=10, mode="vector")

    assert len(through_hnsw(iterative=False)) < 10  # the filter after ef_search candidates leaves too few
    assert len(through_hnsw(iterative=True)) == 10
