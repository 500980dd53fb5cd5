"""Tokens and money: the price table, what a call cost, estimates before a call, and budget checks.

Prices live in agents.yaml's ``prices:`` section, in USD per million tokens, by model name; a model
matches its exact name, else the longest listed prefix (``gpt-4o-mini`` prices ``gpt-4o-mini-2024-07-18``).
A model with no price costs 0 (the offline provider, local models).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from agents import registry
from agents.base import Usage

MILLION = Decimal(1_000_000)
QUANTUM = Decimal("0.000001")  # the precision of the cost columns


@dataclass(frozen=True)
class Estimate:
    """An upper bound of one call: tokens (prompt + the most it may answer) and their cost in USD."""

    tokens: int
    cost: Decimal


def price_of(model: str) -> registry.Price | None:
    table = registry.prices()
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    price = price_of(model)
    if price is None:
        return Decimal(0)
    amount = (price.prompt * prompt_tokens + price.completion * completion_tokens) / MILLION
    return amount.quantize(QUANTUM)


def priced(usage: Usage) -> Usage:
    """``usage`` with its cost from the price table."""
    return replace(usage, cost=cost_of(usage.model, usage.prompt_tokens, usage.completion_tokens))


@dataclass(frozen=True)
class BudgetCheck:
    """``fits`` is False when the estimate would take a total past its budget; ``exceeded`` names
    which ones (``plan.tokens``, ``plan.cost``, ``user.tokens``, ``user.cost``, ``organisation.tokens``,
    ``organisation.cost``)."""

    fits: bool
    exceeded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Totals:
    """Running totals and budgets of a plan or a user (a budget of None is no limit)."""

    tokens_used: int = 0
    cost_used: Decimal = Decimal(0)
    budget_tokens: int | None = None
    budget_cost: Decimal | None = None


def budget_check(*, estimate: Estimate, plan: Totals, user: Totals | None = None,
                 organisation: Totals | None = None) -> BudgetCheck:
    """Would a call of ``estimate`` keep the plan's, the user's and the organisation's totals within their
    budgets?

    Pure: no I/O. A total exactly at its budget fits; one unit over does not.
    """
    exceeded: list[str] = []
    for scope, totals in (("plan", plan), ("user", user), ("organisation", organisation)):
        if totals is None:
            continue
        if totals.budget_tokens is not None and totals.tokens_used + estimate.tokens > totals.budget_tokens:
            exceeded.append(f"{scope}.tokens")
        if totals.budget_cost is not None and totals.cost_used + estimate.cost > totals.budget_cost:
            exceeded.append(f"{scope}.cost")
    return BudgetCheck(fits=not exceeded, exceeded=tuple(exceeded))
