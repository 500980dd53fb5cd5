"""Run as a separate process by the breaker tests: call an agent N times, print one JSON line per call
(the agent that answered, or the error code). ``python -m tests.agents.call_agent NAME N``"""

from __future__ import annotations

import json
import os
import sys
import uuid

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from agents.api import AgentCall, AgentError, agent_run  # noqa: E402 - after django.setup()


def main(name: str, times: int) -> None:
    for _ in range(times):
        call = AgentCall(plan_id="p", step_id=str(uuid.uuid4()), step_key="s", attempt=1, input={}, context={},
                         timeout=5)
        try:
            result = agent_run(name=name, call=call)
            print(json.dumps({"agent": result.agent}), flush=True)
        except AgentError as exc:
            print(json.dumps({"error": exc.code}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
