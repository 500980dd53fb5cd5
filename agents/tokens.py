"""Token management (issue 14): a call answers at most what its plan's token budget has left.

The orchestrator passes the plan's remaining budget in ``AgentCall.tokens_left``; an ``llm`` agent sends
``max_tokens_for(...)`` as the provider's ``max_tokens`` instead of its configured one.
"""

from __future__ import annotations

# A call the budget gate let through (or a person approved past its budget) can still say something.
MIN_ANSWER_TOKENS = 16


def max_tokens_for(configured: int, *, tokens_left: int | None, prompt_tokens: int) -> int:
    """The agent's ``max_tokens``, capped by ``tokens_left`` minus the prompt's tokens (a bound); never
    below MIN_ANSWER_TOKENS. ``tokens_left`` None: no budget, the configured value."""
    if tokens_left is None:
        return configured
    return max(MIN_ANSWER_TOKENS, min(configured, tokens_left - prompt_tokens))
