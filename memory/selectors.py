"""Reads of memory, every one scoped to its owner inside the SQL (memory.scope).

Search: a vector arm (cosine, HNSW on hot rows and on cold rows' halfvec; ``hnsw.iterative_scan`` set per
query with SET LOCAL, so a selective owner filter still returns k rows), a text arm (the blind index:
keyed lexeme hashes in a tsvector, ranked by ts_rank) and reciprocal rank fusion of the two.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from memory import crypto
from memory.embeddings import embedder
from memory.errors import MemoryError_, MemoryNotFound
from memory.models import Kind, MemoryItem, WorkingEntry
from memory.scope import Owner, owner_q, owner_sql
from memory.types import Hit, Memory, WorkingValue

TABLE = MemoryItem._meta.db_table
RRF_K = 60


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in vector) + "]"


def to_memory(item: MemoryItem) -> Memory:
    return Memory(id=item.id, kind=item.kind, text=crypto.unseal(item.content), agent=item.agent, plan_id=item.plan_id,
                  step_key=item.step_key, source=item.source, tier=item.tier, significance=item.significance,
                  revisions=item.revisions, last_action=item.last_action, recall_count=item.recall_count,
                  created_at=item.created_at, updated_at=item.updated_at, expires_at=item.expires_at)


def memory_get(*, owner: Owner, memory_id: uuid.UUID) -> Memory:
    """Raises MemoryNotFound (another owner's memory included)."""
    item = MemoryItem.objects.filter(owner_q(owner), id=memory_id).first()
    if item is None:
        raise MemoryNotFound("no such memory")
    return to_memory(item)


def memory_list(*, owner: Owner, kind: str | None = None, agent: str | None = None, since: datetime | None = None,
                limit: int = 50, offset: int = 0) -> list[Memory]:
    rows = MemoryItem.objects.filter(owner_q(owner))
    if kind:
        rows = rows.filter(kind=kind)
    if agent:
        rows = rows.filter(agent=agent)
    if since:
        rows = rows.filter(created_at__gte=since)
    return [to_memory(item) for item in rows.order_by("-created_at")[offset:offset + limit]]


def nearest_fact(owner: Owner, literal: str) -> tuple[MemoryItem, float] | None:
    """The owner's most similar fact (hot or cold) and its cosine similarity. Exact (no index): facts of one
    owner are few, and a dedup decision must not miss its twin."""
    clause, params = owner_sql(owner)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, 1 - (COALESCE(m.embedding, m.embedding_cold::vector) <=> %s::vector) AS sim FROM {TABLE} m "
            f"WHERE {clause} AND m.kind = 'fact' ORDER BY sim DESC LIMIT 1", [literal, *params])
        row = cursor.fetchone()
    if row is None:
        return None
    return MemoryItem.objects.get(id=row[0]), float(row[1])


@dataclass(frozen=True)
class Filters:
    kinds: tuple[str, ...] = ()
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    exclude_plan: uuid.UUID | None = None

    def sql(self, owner: Owner) -> tuple[str, list[Any]]:
        """The WHERE clause of every arm of a search: the owner first, then the optional filters."""
        clause, params = owner_sql(owner)
        parts = [clause]
        if self.kinds:
            unknown = set(self.kinds) - set(Kind.values)
            if unknown:
                raise MemoryError_(f"unknown kinds {sorted(unknown)}", code="memory.invalid_kind")
            parts.append("m.kind = ANY(%s)")
            params.append(list(self.kinds))
        if self.agent:
            parts.append("m.agent = %s")
            params.append(self.agent)
        if self.since:
            parts.append("m.created_at >= %s")
            params.append(self.since)
        if self.until:
            parts.append("m.created_at < %s")
            params.append(self.until)
        if self.exclude_plan:
            parts.append("m.plan_id IS DISTINCT FROM %s")
            params.append(self.exclude_plan)
        return " AND ".join(parts), params


# The columns a search returns: everything of a Memory but the vectors (384 floats a row, never needed here).
COLUMNS = ("m.id, m.kind, m.agent, m.plan_id, m.step_key, m.source, m.content, m.tier, m.significance, m.revisions, "
           "m.last_action, m.recall_count, m.created_at, m.updated_at, m.expires_at")


def _row_memory(row: tuple[Any, ...]) -> Memory:
    return Memory(id=row[0], kind=row[1], text=crypto.unseal(row[6]), agent=row[2], plan_id=row[3], step_key=row[4],
                  source=row[5], tier=row[7], significance=row[8], revisions=row[9], last_action=row[10],
                  recall_count=row[11], created_at=row[12], updated_at=row[13], expires_at=row[14])


def _vector_arm(cursor: Any, where: str, params: list[Any], literal: str, n: int) -> list[tuple[Any, ...]]:
    """Hot rows (vector HNSW) and cold rows (halfvec HNSW) in one statement; rows end with the similarity."""
    arms = [f"(SELECT {COLUMNS}, 1 - (m.{column} <=> %s::{cast}) FROM {TABLE} m WHERE {where} "
            f"AND m.{column} IS NOT NULL ORDER BY m.{column} <=> %s::{cast} LIMIT %s)"
            for column, cast in (("embedding", "vector"), ("embedding_cold", "halfvec"))]
    cursor.execute(" UNION ALL ".join(arms), [literal, *params, literal, n] * 2)
    # relaxed_order iterative scans may return rows slightly out of order: sort again.
    return sorted(cursor.fetchall(), key=lambda row: -float(row[-1]))[:n]


def _text_arm(cursor: Any, where: str, params: list[Any], lexemes: list[str], n: int) -> list[tuple[Any, ...]]:
    if not lexemes:
        return []
    cursor.execute(
        f"SELECT {COLUMNS} FROM {TABLE} m, to_tsquery('simple', %s) q WHERE {where} AND m.search @@ q "
        "ORDER BY ts_rank(m.search, q) DESC, m.created_at DESC LIMIT %s", [" | ".join(lexemes), *params, n])
    return list(cursor.fetchall())


def memory_search(*, owner: Owner, query: str, k: int = 10, filters: Filters | None = None,
                  mode: str = "hybrid", vector: list[float] | None = None) -> list[Hit]:
    """The owner's k best memories for ``query``: ``vector``, ``text`` or ``hybrid`` (RRF of both).
    Embeds the query first (outside any transaction), then runs the arms in one short transaction: one
    statement for the vector arm (hot and cold), one for the text arm. ``vector`` skips the embedding."""
    if mode not in ("hybrid", "vector", "text"):
        raise MemoryError_("mode must be hybrid, vector or text", code="memory.invalid_mode")
    if not 1 <= k <= 100:
        raise MemoryError_("k must be between 1 and 100", code="memory.invalid_k")
    where, params = (filters or Filters()).sql(owner)
    literal = vector_literal(vector if vector is not None else embedder().embed([query])[0]) if mode != "text" else ""
    n = k * 2 if mode == "hybrid" else k
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                       "set_config('hnsw.ef_search', %s, true)", [str(max(settings.MEMORY_HNSW_EF_SEARCH, n))])
        by_vector = _vector_arm(cursor, where, params, literal, n) if mode != "text" else []
        by_text = _text_arm(cursor, where, params, crypto.blind_lexemes(query), n) if mode != "vector" else []
    rows = {row[0]: row for row in [*by_text, *by_vector]}
    similarity = {row[0]: float(row[-1]) for row in by_vector}
    vector_rank = {row[0]: rank for rank, row in enumerate(by_vector, 1)}
    text_rank = {row[0]: rank for rank, row in enumerate(by_text, 1)}
    scores = {item_id: sum(1 / (RRF_K + ranks[item_id]) for ranks in (vector_rank, text_rank) if item_id in ranks)
              for item_id in rows}
    best = sorted(scores, key=lambda item_id: (-scores[item_id], -similarity.get(item_id, -1)))[:k]
    return [Hit(_row_memory(rows[i]), scores[i], similarity.get(i), vector_rank.get(i), text_rank.get(i))
            for i in best]


def working_read(*, owner: Owner, plan_id: uuid.UUID) -> dict[str, WorkingValue]:
    import json

    return {entry.name: WorkingValue(json.loads(crypto.unseal(entry.value)), entry.version, entry.written_by)
            for entry in WorkingEntry.objects.filter(owner_q(owner), plan_id=plan_id)}
