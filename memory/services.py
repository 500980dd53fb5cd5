"""Writes of memory: add (with near-duplicate decisions), delete, forget an owner, working memory, step and
plan episodes, compaction, retention, re-encryption.

Concurrency rules:
* Embeddings are computed before any transaction opens (a provider may be remote and slow).
* Adding a fact takes a transaction-scoped advisory lock on (owner, "facts"), so two writers of the same
  near-duplicate decide one after the other: one adds, the other updates or no-ops; never two copies.
* Working memory: every entry is one row with a version. ``working_set`` with ``expected_version`` is a
  compare-and-set (one conditional statement); without it, an atomic upsert that bumps the version.
  No read-modify-write happens outside one statement, so no update is lost.
* Archiving a plan or a step is idempotent: at most one episode per (plan, step) by a partial unique index.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from memory import cache, crypto, extract
from memory.embeddings import embedder
from memory.errors import MemoryError_, MemoryNotFound, WorkingConflict
from memory.models import Kind, MemoryItem, MemoryRetention, Tier, WorkingEntry
from memory.scope import Owner, owner_fields, owner_q
from memory.selectors import nearest_fact, to_memory, vector_literal
from memory.types import Added, Remembered, StepOutcome

log = logging.getLogger("memory")

MAX_TEXT = 20_000
TABLE = MemoryItem._meta.db_table
WORKING = WorkingEntry._meta.db_table
RETENTION = MemoryRetention._meta.db_table


def _clean(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise MemoryError_("a memory needs some text", code="memory.empty")
    if "\x00" in text:
        raise MemoryError_("text may not contain NUL characters", code="memory.invalid_text")
    if len(text) > MAX_TEXT:
        raise MemoryError_(f"text longer than {MAX_TEXT} characters", code="memory.too_long")
    return text


def _sealed_columns(text: str, vector: list[float]) -> tuple[bytes, str, list[str], str]:
    return crypto.seal(text), crypto.fingerprint(text), crypto.blind_lexemes(text), vector_literal(vector)


def memory_add(*, owner: Owner, text: str, kind: str = Kind.NOTE, agent: str = "", plan_id: uuid.UUID | None = None,
               step_key: str = "", source: str = "", significance: float = 0.5) -> Added:
    """Store a memory for ``owner``. A fact within MEMORY_DEDUP_UPDATE of an existing fact of the same owner
    rewrites it (``update``); within MEMORY_DEDUP_NOOP (or the same words) it changes nothing (``noop``).
    Raises MemoryError_ for bad text, EmbeddingFailed if the provider fails. Must not run in a transaction."""
    memory_id, action, similarity = _add(owner, text, kind=kind, agent=agent, plan_id=plan_id, step_key=step_key,
                                         source=source, significance=significance)
    return Added(to_memory(MemoryItem.objects.get(id=memory_id)), action, similarity)


def _add(owner: Owner, text: str, *, kind: str, agent: str, plan_id: uuid.UUID | None, step_key: str, source: str,
         significance: float) -> tuple[uuid.UUID, str, float | None]:
    """``memory_add`` without reading the memory back: the id, the action and the similarity to the nearest
    fact."""
    text = _clean(text)
    if kind not in Kind.values:
        raise MemoryError_(f"kind must be one of {sorted(Kind.values)}", code="memory.invalid_kind")
    vector = embedder().embed([text])[0]  # before any transaction: the provider may be remote
    sealed = _sealed_columns(text, vector)
    content, fingerprint, lexemes, literal = sealed
    now = timezone.now()

    def insert() -> uuid.UUID | None:
        return _insert(owner, kind=kind, agent=agent, plan_id=plan_id, step_key=step_key, source=source,
                       significance=significance, sealed=sealed, now=now)

    if kind != Kind.FACT:  # one statement, atomic on its own
        item_id = insert()
        cache.invalidate(owner)
        if item_id is None:  # an episode of this (plan, step) already exists: archiving twice is a no-op
            existing = MemoryItem.objects.filter(owner_q(owner), kind=Kind.EPISODE, plan_id=plan_id,
                                                 step_key=step_key).values_list("id", flat=True).get()
            return existing, "noop", None
        return item_id, "add", None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"memory:facts:{owner.cache_tag}"])
        near = nearest_fact(owner, literal)
        if near is not None:
            item, similarity = near
            if similarity >= settings.MEMORY_DEDUP_NOOP or item.fingerprint == fingerprint:
                log.info("memory.fact.noop", extra={"memory_id": str(item.id), "similarity": similarity})
                return item.id, "noop", similarity
            if similarity >= settings.MEMORY_DEDUP_UPDATE:
                _rewrite(item, content, fingerprint, lexemes, literal, now, source=source or item.source)
                cache.invalidate(owner)
                log.info("memory.fact.update", extra={"memory_id": str(item.id), "similarity": similarity})
                return item.id, "update", similarity
        item_id = insert()
    cache.invalidate(owner)
    assert item_id is not None  # only episodes conflict
    return item_id, "add", near[1] if near else None


# One INSERT; the expiry follows the person's retention (0: never), read by the same statement. An episode of
# a (plan, step) that exists already conflicts (a partial unique index) and is skipped.
_INSERT = (
    f"INSERT INTO {TABLE} (id, owner_id, kind, agent, plan_id, step_key, source, content, fingerprint, "
    "search, embedding, tier, significance, revisions, last_action, recall_count, created_at, updated_at, "
    "expires_at) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, array_to_tsvector(%s::text[]), %s::vector, "
    "'hot', %s, 0, 'add', 0, %s, %s, CASE WHEN ttl.days > 0 THEN %s + make_interval(days => ttl.days) END "
    f"FROM (SELECT COALESCE((SELECT ttl_days FROM {RETENTION} WHERE owner_id = %s), %s) AS days) AS ttl "
    "ON CONFLICT DO NOTHING")


def _insert_params(owner: Owner, *, kind: str, agent: str, plan_id: uuid.UUID | None, step_key: str, source: str,
                   significance: float, sealed: tuple[bytes, str, list[str], str], now: datetime) -> list[Any]:
    """The parameters of ``_INSERT``; ``sealed`` is ``_sealed_columns`` of the text and its vector."""
    content, fingerprint, lexemes, literal = sealed
    return [uuid.uuid4(), owner_fields(owner)["owner_id"], kind, agent[:100], plan_id, step_key[:100], source[:200],
            content, fingerprint, lexemes, literal, significance, now, now, now, owner.user_id,
            settings.MEMORY_TTL_DAYS or 0]


def _insert(owner: Owner, **fields: Any) -> uuid.UUID | None:
    """One memory (see ``_insert_params``); its id, or None if it was an episode that exists already."""
    with connection.cursor() as cursor:
        cursor.execute(_INSERT + " RETURNING id", _insert_params(owner, **fields))
        row = cursor.fetchone()
    return row[0] if row else None


def _rewrite(item: MemoryItem, content: bytes, fingerprint: str, lexemes: list[str], literal: str, now: datetime,
             *, source: str) -> None:
    """The newer wording wins; a rewrite makes the memory hot again."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET content = %s, fingerprint = %s, search = array_to_tsvector(%s::text[]), "
            "embedding = %s::vector, embedding_cold = NULL, tier = 'hot', revisions = revisions + 1, "
            "last_action = 'update', updated_at = %s, source = %s WHERE id = %s",
            [content, fingerprint, lexemes, literal, now, source[:200], item.id])


def memory_delete(*, owner: Owner, memory_id: uuid.UUID) -> None:
    """Raises MemoryNotFound (also for another owner's memory: its existence is not revealed)."""
    deleted, _ = MemoryItem.objects.filter(owner_q(owner), id=memory_id).delete()
    if not deleted:
        raise MemoryNotFound("no such memory")
    cache.invalidate(owner)


def owner_forget(*, owner: Owner) -> dict[str, int]:
    """Delete everything memory holds of an owner: memories, working memory, retention, cached context."""
    with transaction.atomic():
        memories, _ = MemoryItem.objects.filter(owner_q(owner)).delete()
        working, _ = WorkingEntry.objects.filter(owner_q(owner)).delete()
        MemoryRetention.objects.filter(owner_q(owner)).delete()
    cached = cache.forget(owner)
    log.info("memory.owner.forgotten", extra={"owner": owner.cache_tag, "memories": memories})
    return {"memories": memories, "working": working, "cached": cached}


def retention_set(*, owner: Owner, ttl_days: int) -> None:
    MemoryRetention.objects.update_or_create(owner_id=owner.user_id, defaults={"ttl_days": ttl_days})


def recalled(*, owner: Owner, ids: list[uuid.UUID]) -> None:
    """Count a recall; a cold memory recalled becomes hot again (its halfvec back to a full vector)."""
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET recall_count = recall_count + 1, last_recalled_at = %s, tier = 'hot', "
            "embedding = COALESCE(embedding, embedding_cold::vector), embedding_cold = NULL "
            "WHERE id = ANY(%s) AND owner_id = %s", [timezone.now(), ids, owner.user_id])


# --- working memory -------------------------------------------------------------------------------------


def working_set(*, owner: Owner, plan_id: uuid.UUID, name: str, value: Any, expected_version: int | None = None,
                written_by: str = "") -> int:
    """Write entry ``name`` of the plan's scratchpad; returns its new version.

    ``expected_version``: None writes whatever is there (atomic upsert); 0 creates only if absent; n writes only
    if the entry is still at version n. Raises WorkingConflict (with the current version) otherwise."""
    if not name or len(name) > 100:
        raise MemoryError_("a working-memory name has 1 to 100 characters", code="memory.invalid_name")
    sealed = crypto.seal(json.dumps(value))
    now = timezone.now()
    with connection.cursor() as cursor:
        if expected_version is None:
            cursor.execute(
                f"INSERT INTO {WORKING} (owner_id, plan_id, name, value, version, written_by, updated_at) "
                "VALUES (%s, %s, %s, %s, 1, %s, %s) ON CONFLICT (plan_id, name) DO UPDATE SET value = EXCLUDED.value, "
                f"version = {WORKING}.version + 1, written_by = EXCLUDED.written_by, updated_at = EXCLUDED.updated_at "
                f"WHERE {WORKING}.owner_id = EXCLUDED.owner_id RETURNING version",
                [owner.user_id, plan_id, name, sealed, written_by[:100], now])
        elif expected_version == 0:
            cursor.execute(
                f"INSERT INTO {WORKING} (owner_id, plan_id, name, value, version, written_by, updated_at) "
                "VALUES (%s, %s, %s, %s, 1, %s, %s) ON CONFLICT (plan_id, name) DO NOTHING RETURNING version",
                [owner.user_id, plan_id, name, sealed, written_by[:100], now])
        else:
            cursor.execute(
                f"UPDATE {WORKING} SET value = %s, version = version + 1, written_by = %s, updated_at = %s "
                "WHERE plan_id = %s AND name = %s AND owner_id = %s AND version = %s RETURNING version",
                [sealed, written_by[:100], now, plan_id, name, owner.user_id, expected_version])
        row = cursor.fetchone()
    if row is None:
        current = (WorkingEntry.objects.filter(owner_q(owner), plan_id=plan_id, name=name)
                   .values_list("version", flat=True).first()) or 0
        raise WorkingConflict(f"working memory {name!r} is at version {current}, not {expected_version}",
                              current_version=current)
    return int(row[0])


def working_update(*, owner: Owner, plan_id: uuid.UUID, name: str, change: Callable[[Any], Any],
                   written_by: str = "", attempts: int = 100) -> int:
    """Read-modify-write of one entry by compare-and-set, retried on conflict (``change(None)`` when absent)."""
    from memory.selectors import working_read

    for _ in range(attempts):
        current = working_read(owner=owner, plan_id=plan_id).get(name)
        try:
            return working_set(owner=owner, plan_id=plan_id, name=name, written_by=written_by,
                               value=change(current.value if current else None),
                               expected_version=current.version if current else 0)
        except WorkingConflict:
            continue
    raise WorkingConflict(f"working memory {name!r}: still conflicting after {attempts} tries", current_version=-1)


# --- episodes and facts from finished work --------------------------------------------------------------


def _text_of(output: Any) -> str:
    if isinstance(output, dict):
        for key in ("text", "answer", "result", "summary"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return output if isinstance(output, str) else json.dumps(output, sort_keys=True, default=str)


def _prompt_of(step_input: dict[str, Any]) -> str:
    prompt = step_input.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(step_input, sort_keys=True, default=str)


def _asked(outcome: StepOutcome) -> dict[str, Any]:
    """The ``memory`` field of a step's output (what the agent asks memory to keep), or {}."""
    field = outcome.output.get("memory") if isinstance(outcome.output, dict) else None
    return field if isinstance(field, dict) else {}


def step_remember(*, owner: Owner, plan_id: uuid.UUID, outcome: StepOutcome) -> Remembered:
    """The facts a finished step leaves in semantic memory: its ``memory`` output field's ``facts`` ([text])
    and the facts extracted from its text. Its scratchpad entries are written before its outcome is recorded
    (``working_remember``), its episode at the plan's end (``plan_archive``). Must not run in a transaction."""
    asked = _asked(outcome)
    facts = [str(f) for f in asked.get("facts") or [] if str(f).strip()]
    if outcome.status == "succeeded" and outcome.output is not None:
        facts += [f for f in extract.extract_facts(_text_of(outcome.output)) if f not in facts]
    added_facts = tuple(memory_add(owner=owner, kind=Kind.FACT, agent=outcome.agent, plan_id=plan_id,
                                   step_key=outcome.key, source=f"plan:{plan_id}/step:{outcome.key}", text=fact)
                        for fact in facts[:10])
    return Remembered(added_facts)


def working_remember(*, owner: Owner, plan_id: uuid.UUID, outcome: StepOutcome) -> tuple[str, ...]:
    """The ``working`` part of a step's ``memory`` output field ({name: value}) into the plan's scratchpad;
    the names written. An upsert per name, so writing the same answer twice changes nothing but versions."""
    entries = _asked(outcome).get("working")
    for name, value in (entries or {}).items():
        working_set(owner=owner, plan_id=plan_id, name=str(name), value=value, written_by=outcome.key)
    return tuple(str(name) for name in entries or {})


def step_episode(outcome: StepOutcome) -> tuple[str, float] | None:
    """A finished step's episode (its text and significance), or None if it is not worth keeping: no text (a
    no-op step), or a significance (0.5, 0.6 for a long answer, 0.8 for a failure, or what its output's
    ``memory.significance`` says) below MEMORY_EPISODE_MIN_SIGNIFICANCE."""
    asked = _asked(outcome)
    if outcome.status == "succeeded":
        text = "" if outcome.output is None else _text_of(outcome.output)
    else:
        text = outcome.error
    significance = 0.8 if outcome.status != "succeeded" else (0.6 if len(text) > 200 else 0.5)
    with suppress(TypeError, ValueError):  # an agent's word, not a reason to lose the plan's episodes
        significance = float(asked.get("significance", significance))
    if significance < settings.MEMORY_EPISODE_MIN_SIGNIFICANCE or not text.strip():
        return None
    return (f"Step {outcome.key} ({outcome.agent}) {outcome.status}. Asked: {_prompt_of(outcome.input)[:400]}. "
            f"Answer: {extract.summarise(text, 600)}"), significance


EMBED_BATCH = 256  # texts per embedding call when a plan is archived


def plan_archive(*, owner: Owner, plan_id: uuid.UUID, request: str, status: str, steps: list[StepOutcome],
                 result: Any = None, remember: frozenset[str] = frozenset()) -> None:
    """The plan's end: an episode for each step of ``remember`` worth keeping (``step_episode``) and one for the
    plan (its request, outcome, steps and working memory), written together (embedded EMBED_BATCH at a time,
    inserted in one pipelined batch); then its scratchpad dropped. Idempotent: at most one episode per (plan,
    step) and per plan, so a second call changes nothing. Must not run in a transaction."""
    from memory.selectors import working_read

    scratch = working_read(owner=owner, plan_id=plan_id)
    lines = [f"Plan {status}: {request}",
             "Steps: " + "; ".join(f"{s.key} ({s.agent}) {s.status}" for s in steps)]
    if result is not None:
        lines.append(f"Result: {extract.summarise(_text_of(result), 600)}")
    if scratch:
        lines.append("Working memory: " + json.dumps({k: v.value for k, v in scratch.items()}, default=str)[:2000])
    episodes = [(s.key, s.agent, found) for s in steps if s.key in remember and (found := step_episode(s))]
    episodes.append(("", "", ("\n".join(lines), 1.0)))
    texts = [_clean(text.replace("\x00", "")[:MAX_TEXT]) for _, _, (text, _) in episodes]
    vectors = [v for i in range(0, len(texts), EMBED_BATCH) for v in embedder().embed(texts[i:i + EMBED_BATCH])]
    now = timezone.now()
    rows = [_insert_params(owner, kind=Kind.EPISODE, agent=agent, plan_id=plan_id, step_key=key,
                           source=f"plan:{plan_id}/step:{key}" if key else f"plan:{plan_id}",
                           significance=significance, sealed=_sealed_columns(text, vector), now=now)
            for (key, agent, (_, significance)), text, vector in zip(episodes, texts, vectors, strict=True)]
    with connection.cursor() as cursor:  # then the scratchpad, which is in the plan's episode now
        cursor.executemany(_INSERT, rows)
    WorkingEntry.objects.filter(owner_q(owner), plan_id=plan_id).delete()
    cache.invalidate(owner)


# --- maintenance ----------------------------------------------------------------------------------------


def compact(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Tiering and retention, for the beat task: hot memories idle for MEMORY_COLD_AFTER_DAYS and recalled
    fewer than MEMORY_HOT_RECALLS times become cold (content summarised, vector kept as halfvec in its own
    HNSW index); expired memories are deleted; working memory of plans never archived is dropped."""
    now = now or timezone.now()
    idle_since = now - timedelta(days=settings.MEMORY_COLD_AFTER_DAYS)
    cooled = 0
    while True:
        with transaction.atomic():
            items = list(MemoryItem.objects.select_for_update(skip_locked=True)
                         .filter(tier=Tier.HOT, recall_count__lt=settings.MEMORY_HOT_RECALLS, updated_at__lt=idle_since)
                         .exclude(last_recalled_at__gte=idle_since).only("id", "content")[:batch])
            for item in items:
                summary = extract.summarise(crypto.unseal(item.content))
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {TABLE} SET content = %s, search = array_to_tsvector(%s::text[]), "
                        "embedding_cold = embedding::halfvec, embedding = NULL, tier = 'cold' WHERE id = %s",
                        [crypto.seal(summary), crypto.blind_lexemes(summary), item.id])
        cooled += len(items)
        if len(items) < batch:
            break
    expired, _ = MemoryItem.objects.filter(expires_at__lt=now).delete()
    working_idle_since = now - timedelta(hours=settings.MEMORY_WORKING_TTL_HOURS)
    stale, _ = WorkingEntry.objects.filter(updated_at__lt=working_idle_since).delete()
    log.info("memory.compacted", extra={"cooled": cooled, "expired": expired, "working_dropped": stale})
    return {"cooled": cooled, "expired": expired, "working_dropped": stale}


def reencrypt(*, batch: int = 500, reindex: bool = False) -> dict[str, int]:
    """Re-seal every memory and working entry under the newest key (and, with ``reindex``, rebuild the blind
    index under the current MEMORY_BLIND_INDEX_KEY). Batched, row-locked, safe while the service runs."""
    counts = {"memories": 0, "working": 0}
    for model, field, key in ((MemoryItem, "content", "memories"), (WorkingEntry, "value", "working")):
        last: Any = None
        while True:
            with transaction.atomic():
                rows = model.objects.select_for_update().order_by("pk")
                rows = rows.filter(pk__gt=last) if last is not None else rows
                chunk = list(rows.only("pk", field)[:batch])
                for row in chunk:
                    token = getattr(row, field)
                    values: dict[str, Any] = {field: crypto.reseal(token)}
                    model.objects.filter(pk=row.pk).update(**values)
                    if reindex and model is MemoryItem:
                        with connection.cursor() as cursor:
                            text = crypto.unseal(token)
                            cursor.execute(f"UPDATE {TABLE} SET search = array_to_tsvector(%s::text[]), "
                                           "fingerprint = %s WHERE id = %s",
                                           [crypto.blind_lexemes(text), crypto.fingerprint(text), row.pk])
            counts[key] += len(chunk)
            if len(chunk) < batch:
                break
            last = chunk[-1].pk
    return counts


def _column_dims() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                       [TABLE])
        return int(cursor.fetchone()[0])


def reembed(*, batch: int = 200) -> dict[str, int]:
    """Embed every memory again with the current provider (after changing model or dimension). If
    MEMORY_EMBEDDING_DIM differs from the columns', the columns are altered and their HNSW indexes rebuilt
    afterwards (searches find fewer rows until it finishes: run it in a maintenance window). Embeddings are
    computed outside any transaction, a batch at a time."""
    dim = settings.MEMORY_EMBEDDING_DIM
    resized = _column_dims() != dim
    if resized:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS memory_embedding_hnsw")
            cursor.execute("DROP INDEX IF EXISTS memory_embedding_cold_hnsw")
            cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN embedding TYPE vector({dim}) USING NULL, "
                           f"ALTER COLUMN embedding_cold TYPE halfvec({dim}) USING NULL")
    provider, done, last = embedder(), 0, None
    while True:
        rows = MemoryItem.objects.order_by("id").only("id", "content", "tier")
        chunk = list((rows.filter(id__gt=last) if last is not None else rows)[:batch])
        if not chunk:
            break
        vectors = provider.embed([crypto.unseal(item.content) for item in chunk])
        with transaction.atomic(), connection.cursor() as cursor:
            for item, vector in zip(chunk, vectors, strict=True):
                column, cast = ("embedding_cold", "halfvec") if item.tier == Tier.COLD else ("embedding", "vector")
                cursor.execute(f"UPDATE {TABLE} SET {column} = %s::{cast} WHERE id = %s",
                               [vector_literal(vector), item.id])
        done += len(chunk)
        last = chunk[-1].id
    if resized:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE INDEX memory_embedding_hnsw ON {TABLE} USING hnsw (embedding vector_cosine_ops) "
                           "WITH (m = 16, ef_construction = 64)")
            cursor.execute(f"CREATE INDEX memory_embedding_cold_hnsw ON {TABLE} USING hnsw "
                           "(embedding_cold halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)")
    return {"reembedded": done, "dimensions": dim, "resized": int(resized)}
