"""``memory`` agents: a plan step that searches or writes memory explicitly (memory/actions.py lists the
actions: search, remember, read and write the plan's working memory). No options."""

from __future__ import annotations

import uuid

from agents.base import Agent, AgentCall, AgentResult
from agents.errors import AgentError, TransientAgentError
from common.errors import DomainError


class MemoryAgent(Agent):
    kind = "memory"

    def run(self, call: AgentCall) -> AgentResult:
        from memory import api as memory

        try:
            output = memory.agent_action(plan_id=uuid.UUID(call.plan_id), step_key=call.step_key,
                                         agent=self.spec.name, step_input=call.input)
        except memory.EmbeddingFailed as exc:  # the provider may come back: worth another try
            raise TransientAgentError(exc.message, code=exc.code) from exc
        except DomainError as exc:
            raise AgentError(exc.message, code=exc.code) from exc
        return AgentResult(output=output)
