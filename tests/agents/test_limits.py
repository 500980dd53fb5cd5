"""Concurrency slots and rate limits shared in Redis, budgets and the price table."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest

from agents import limits
from agents.costs import Estimate, Totals, budget_check, cost_of
from agents.errors import AgentTimeout, TransientAgentError
from agents.streaming import ChunkBuffer


def test_a_concurrency_limit_holds_back_the_call_over_it() -> None:
    agent = f"limited-{uuid.uuid4().hex[:6]}"
    with limits.concurrency_slot(agent, limit=2, lease=30, wait=1), \
            limits.concurrency_slot(agent, limit=2, lease=30, wait=1):
        assert limits.slots_in_use(agent) == 2
        with pytest.raises(AgentTimeout) as raised, limits.concurrency_slot(agent, limit=2, lease=30, wait=0.1):
            pass
        assert raised.value.code == "agent.busy"
    assert limits.slots_in_use(agent) == 0


def test_a_slot_frees_when_another_call_ends() -> None:
    agent = f"limited-{uuid.uuid4().hex[:6]}"
    release = threading.Event()

    def hold() -> None:
        with limits.concurrency_slot(agent, limit=1, lease=30, wait=1):
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    deadline = time.monotonic() + 10
    while limits.slots_in_use(agent) == 0:
        assert time.monotonic() < deadline, "the holder never took the slot"
        time.sleep(0.01)
    release.set()
    with limits.concurrency_slot(agent, limit=1, lease=30, wait=5):
        assert limits.slots_in_use(agent) == 1
    holder.join()


def test_the_rate_limiter_admits_the_burst_then_says_how_long_to_wait() -> None:
    key = f"rate-{uuid.uuid4().hex[:6]}"

    admitted = [limits.rate_try(key, per_minute=60, burst=3) for _ in range(3)]
    wait = limits.rate_try(key, per_minute=60, burst=3)

    assert admitted == [0.0, 0.0, 0.0]
    assert 0 < wait <= 1.0


def test_a_call_that_would_wait_past_its_timeout_is_rate_limited() -> None:
    key = f"rate-{uuid.uuid4().hex[:6]}"
    limits.rate_acquire(key, per_minute=1, burst=1, wait=1)

    with pytest.raises(TransientAgentError) as raised:
        limits.rate_acquire(key, per_minute=1, burst=1, wait=0.5)

    assert raised.value.code == "agent.rate_limited" and (raised.value.retry_after or 0) > 50


def test_unused_tokens_are_given_back() -> None:
    key = f"tokens-{uuid.uuid4().hex[:6]}"
    limits.rate_acquire(key, per_minute=6000, burst=1000, cost=1000, wait=1)
    assert limits.rate_try(key, per_minute=6000, burst=1000, cost=900) > 0

    limits.rate_refund(key, per_minute=6000, cost=950)

    assert limits.rate_try(key, per_minute=6000, burst=1000, cost=900) == 0.0


def test_an_oversized_request_goes_through_when_the_limiter_is_idle() -> None:
    key = f"tokens-{uuid.uuid4().hex[:6]}"

    assert limits.rate_try(key, per_minute=1000, burst=100, cost=5000) == 0.0
    assert limits.rate_try(key, per_minute=1000, burst=100, cost=1) > 0


@pytest.mark.parametrize(("plan", "user", "fits", "exceeded"), [
    (Totals(), None, True, ()),
    (Totals(900, Decimal("0.5"), 1000, Decimal(1)), None, True, ()),  # exactly at the budget: fits
    (Totals(901, Decimal("0.5"), 1000, None), None, False, ("plan.tokens",)),
    (Totals(0, Decimal("0.95"), None, Decimal(1)), None, False, ("plan.cost",)),
    (Totals(), Totals(10, Decimal("9.99"), None, Decimal(10)), False, ("user.cost",)),
    (Totals(950, Decimal(0), 1000), Totals(5000, Decimal(0), 5050), False, ("plan.tokens", "user.tokens")),
])
def test_budget_check(plan: Totals, user: Totals | None, fits: bool, exceeded: tuple[str, ...]) -> None:
    check = budget_check(estimate=Estimate(100, Decimal("0.5")), plan=plan, user=user)

    assert (check.fits, check.exceeded) == (fits, exceeded)


def test_prices_match_the_longest_model_prefix() -> None:
    assert cost_of("fake-gpt-2026-01-01", 1_000_000, 1_000_000) == Decimal("12.500000")
    assert cost_of("no-such-model", 10**6, 10**6) == 0


def test_chunks_are_batched_and_the_rest_is_flushed_on_close() -> None:
    flushed: list[str] = []
    buffer = ChunkBuffer(flushed.append, interval=3600, max_chars=10)

    for piece in ["ab", "cd", "efghij", "kl"]:
        buffer.add(piece)
    buffer.close()

    assert flushed == ["abcdefghij", "kl"]
