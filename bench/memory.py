"""Memory search: ``MEMORY_BENCH_ROWS`` (default 100,000) memories of 384 dimensions across 100 owners of very
uneven size (owner i holds a share proportional to 1 / i^1.2: the largest about 24 %, the smallest about
0.1 %). Vectors are clustered like real embeddings (200 random centres, each row a centre plus noise,
generated in Postgres); each row has real ciphertext content and a blind index of 8 words drawn from a
2,000-word vocabulary. Loaded with the HNSW index dropped, then the index is built (m 16, ef_construction 64;
build time reported). For the largest, a middle (~1 %) and the smallest owner, 200 queries each (a random
centre plus noise): ``memory_search`` (vector mode, k 10: the SET LOCAL of the iterative scan, both HNSW
arms, fetching and decrypting the 10 rows) against exact search in the same run (the same SQL with index
scans off: a sequential scan and sort), p50 / p95 latency and recall@10 against the exact answer. Hybrid
search (vector + blind-index full text, RRF) p95 for the largest owner. Context assembly per step: a step of
the largest owner with two dependencies, recall and budget, with and without the Redis cache hit.
Targets: p95 <= 20 ms and recall@10 >= 0.95 for every owner size.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from typing import Any

from bench.harness import Harness, Result

ROWS = int(os.environ.get("MEMORY_BENCH_ROWS", "100000"))
OWNERS, DIM, CENTRES, VOCABULARY, QUERIES, K = 100, 384, 200, 2000, 200, 10


def _sizes(rows: int) -> list[int]:
    weights = [1 / (i ** 1.2) for i in range(1, OWNERS + 1)]
    total = sum(weights)
    return [max(1, round(rows * w / total)) for w in weights]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load(owner_ids: list[int], sizes: list[int]) -> tuple[list[list[float]], float, float]:
    """Insert the rows; return the centres, the load seconds and the index build seconds."""
    from django.db import connection

    from memory import crypto
    from memory.models import MemoryItem

    table = MemoryItem._meta.db_table
    rng = random.Random(7)
    centres = [[rng.gauss(0, 1) for _ in range(DIM)] for _ in range(CENTRES)]
    lexemes = [crypto.blind_lexemes(f"word{n}")[0] for n in range(VOCABULARY)]
    filler = crypto.seal("A benchmark memory: what happened when a plan ran, summarised in a sentence or two.")
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE owner_id = ANY(%s)", [owner_ids])
        cursor.execute("DROP INDEX IF EXISTS memory_embedding_hnsw")
        cursor.execute("CREATE TEMP TABLE bench_centres (n int PRIMARY KEY, v float4[])")
        cursor.executemany("INSERT INTO bench_centres VALUES (%s, %s)", list(enumerate(centres)))
        for owner_id, size in zip(owner_ids, sizes, strict=True):
            cursor.execute(
                f"INSERT INTO {table} (id, owner_id, kind, agent, step_key, source, content, fingerprint, search, "
                "embedding, tier, significance, revisions, last_action, recall_count, created_at, updated_at) "
                "SELECT gen_random_uuid(), %s, 'episode', '', '', 'bench', %s, '', "
                "array_to_tsvector(array(SELECT (%s::text[])[1 + floor(random() * %s)::int] "
                "FROM generate_series(1, 8) w WHERE w > 0 * g.i)), "
                "array(SELECT c.v[d] + (random() - 0.5) * 1.2 FROM generate_series(1, %s) d "
                "WHERE d > 0 * g.i)::vector, "
                "'hot', 0.5, 0, 'add', 0, now(), now() FROM generate_series(1, %s) g(i) "
                "CROSS JOIN LATERAL (SELECT floor(random() * %s + 0 * g.i)::int AS n) pick "
                "JOIN bench_centres c ON c.n = pick.n",
                [owner_id, filler, lexemes, VOCABULARY, DIM, size, CENTRES])
        cursor.execute("DROP TABLE bench_centres")
        loaded = time.monotonic() - t0
        t1 = time.monotonic()
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        cursor.execute(f"CREATE INDEX memory_embedding_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
                       "WITH (m = 16, ef_construction = 64)")
        cursor.execute(f"ANALYZE {table}")
    return centres, loaded, time.monotonic() - t1


def _query(rng: random.Random, centres: list[list[float]]) -> list[float]:
    centre = rng.choice(centres)
    return [x + (rng.random() - 0.5) * 1.2 for x in centre]


def _exact(owner_id: int, vector: list[float]) -> tuple[list[uuid.UUID], float]:
    from django.db import connection, transaction

    from memory.models import MemoryItem
    from memory.selectors import vector_literal

    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"SELECT id FROM {MemoryItem._meta.db_table} WHERE owner_id = %s AND embedding IS NOT NULL "
                       "ORDER BY embedding <=> %s::vector LIMIT %s", [owner_id, vector_literal(vector), K])
        ids = [row[0] for row in cursor.fetchall()]
    return ids, time.perf_counter() - t0


def _owner_run(owner_id: int, centres: list[list[float]], seed: int) -> dict[str, Any]:
    from memory import api

    rng = random.Random(seed)
    ours: list[float] = []
    exact_times: list[float] = []
    recalls: list[float] = []
    owner = api.Owner(owner_id)
    for _ in range(QUERIES):
        vector = _query(rng, centres)
        truth, took = _exact(owner_id, vector)
        exact_times.append(took)
        t0 = time.perf_counter()
        hits = api.memory_search(owner=owner, query="", vector=vector, k=K, mode="vector")
        ours.append(time.perf_counter() - t0)
        found = {h.memory.id for h in hits}
        recalls.append(len(found & set(truth)) / max(1, min(K, len(truth))))
    return {"p50": statistics.median(ours) * 1000, "p95": _pct(ours, 0.95) * 1000,
            "exact_p50": statistics.median(exact_times) * 1000, "exact_p95": _pct(exact_times, 0.95) * 1000,
            "recall": statistics.mean(recalls), "min_recall": min(recalls)}


def run(h: Harness) -> list[Result]:
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from memory import api

    users = [get_user_model().objects.get_or_create(username=f"bench-memory-{i}")[0] for i in range(OWNERS)]
    owner_ids = [u.pk for u in users]
    sizes = _sizes(ROWS)
    centres, loaded, built = _load(owner_ids, sizes)
    results = [Result.info("memory: load rows / build HNSW", built, "s",
                           f"{sum(sizes)} rows of {DIM} dims loaded in {loaded:.0f} s; HNSW build {built:.0f} s")]
    middle = min(range(OWNERS), key=lambda i: abs(sizes[i] - sum(sizes) / 100))
    for label, index in (("largest", 0), ("~1 %", middle), ("smallest", OWNERS - 1)):
        r = _owner_run(owner_ids[index], centres, seed=index)
        size = f"{sizes[index]} rows ({sizes[index] / sum(sizes):.2%})"
        results += [
            Result.at_most(f"memory search p95, {label} owner", r["p95"], "ms", 20.0,
                           f"{size}; p50 {r['p50']:.2f} ms; exact search p50 {r['exact_p50']:.2f} / p95 "
                           f"{r['exact_p95']:.2f} ms"),
            Result(f"memory recall@10, {label} owner", r["recall"], "", 0.95, r["recall"] >= 0.95,
                   f"higher is better (target is a floor); worst query {r['min_recall']:.2f}"),
        ]
    rng = random.Random(99)
    hybrid: list[float] = []
    owner = api.Owner(owner_ids[0])
    for _ in range(QUERIES):
        words = " ".join(f"word{rng.randrange(VOCABULARY)}" for _ in range(3))
        vector = _query(rng, centres)
        t0 = time.perf_counter()
        api.memory_search(owner=owner, query=words, vector=vector, k=K, mode="hybrid")
        hybrid.append(time.perf_counter() - t0)
    results.append(Result.at_most("memory hybrid search p95, largest owner", _pct(hybrid, 0.95) * 1000, "ms", 20.0,
                                  f"p50 {statistics.median(hybrid) * 1000:.2f} ms; vector + blind-index text, RRF"))
    assembly: list[float] = []
    cached: list[float] = []
    dependencies = {"search": {"text": "s " * 3000}, "reasoning": {"text": "r " * 500}}
    with override_settings(MEMORY_MIN_RELEVANCE=-1.0):  # bench vectors are not text embeddings: keep every hit
        for n in range(50):
            step_input = {"prompt": f"word{n} word{n + 1} what happened last time? {n}"}
            for sink in (assembly, cached):  # the second call hits the Redis cache of the first
                t0 = time.perf_counter()
                api.context_assemble(owner=owner, plan_id=None, step_key="s", agent="bench", step_input=step_input,
                                     dependencies=dependencies, budget_tokens=2000)
                sink.append(time.perf_counter() - t0)
    results += [Result.info("memory context assembly per step, p50", statistics.median(assembly) * 1000, "ms",
                            f"p95 {_pct(assembly, 0.95) * 1000:.2f} ms; recall (hybrid search) + budget, cache miss"),
                Result.info("memory context assembly per step, cached, p50", statistics.median(cached) * 1000, "ms",
                            f"p95 {_pct(cached, 0.95) * 1000:.2f} ms; the recall served from Redis")]
    for owner_id in owner_ids:
        api.owner_forget(owner=api.Owner(owner_id))
    return results
