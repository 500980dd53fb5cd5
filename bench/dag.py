"""DAG: a random (seed 7) DAG of 60 ``sleep`` steps of 50-500 ms: 3 roots, every other step depends on
1-3 random earlier steps. Its critical path is the longest chain of durations (no scheduling
overhead). Makespan =
plan.finished_at - plan.started_at, on one worker with enough threads for every step (``-c 60``).
Median of 3 runs. Target makespan <= 1.15 x critical path.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from bench.harness import Harness, Result

SIZE = 60
SEED = 7
CONCURRENCY = 60
REPEATS = 3


def make_dag(seed: int = SEED) -> list[dict[str, Any]]:
    """Steps in topological order; steps 0-2 are roots, step i >= 3 depends on 1-3 random earlier steps."""
    rng = random.Random(seed)
    steps = []
    for i in range(SIZE):
        deps = rng.sample(range(i), k=min(i, rng.randint(1, 3))) if i >= 3 else []
        steps.append({"key": f"d{i}", "agent": "sleep", "input": {"seconds": round(rng.uniform(0.05, 0.5), 3)},
                      "depends_on": [f"d{j}" for j in sorted(deps)]})
    return steps


def critical_path(steps: list[dict[str, Any]]) -> tuple[float, int]:
    """The longest sum of durations along a dependency chain, and that chain's length in steps."""
    finish: dict[str, tuple[float, int]] = {}
    for step in steps:  # topological order
        before = max((finish[d] for d in step["depends_on"]), default=(0.0, 0))
        finish[step["key"]] = (before[0] + step["input"]["seconds"], before[1] + 1)
    return max(finish.values())


def once(h: Harness, steps: list[dict[str, Any]]) -> float:
    from orchestrator.services import plan_create

    plan = plan_create(owner=h.user, request="bench dag", steps=steps)
    plan = h.wait_plan(plan.id, timeout=120)
    return float((plan.finished_at - plan.started_at).total_seconds())


def run(h: Harness) -> list[Result]:
    steps = make_dag()
    path, depth = critical_path(steps)
    with h.worker("dag", concurrency=CONCURRENCY, env={"DB_POOL_MAX_SIZE": "20"}):
        makespans = [once(h, steps) for _ in range(REPEATS)]
    median = statistics.median(makespans)
    return [Result.at_most("DAG: makespan / critical path", median / path, "x", 1.15,
                           f"{SIZE} steps, critical path {path:.2f} s over {depth} steps, makespans "
                           + ", ".join(f"{m:.2f}" for m in makespans) + " s")]
