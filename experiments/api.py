"""What other apps may call. Plain dataclasses cross the boundary; models stay inside this app.

The orchestrator calls ``plan_variant`` / ``assignment_record`` when it creates a plan, and registers
``on_plan_outcomes`` (how to read ended plans) in its AppConfig.ready(); the agents app calls this app's
hook (experiments/hooks.py, registered in ExperimentsConfig.ready()) before each agent call.
"""

from __future__ import annotations

from experiments.config import ExperimentConfigError
from experiments.services import (
    Choice,
    OutcomeReader,
    PlanOutcome,
    assignment_record,
    experiments_evaluate,
    experiments_sync,
    on_plan_outcomes,
    plan_variant,
)

__all__ = [
    "Choice", "ExperimentConfigError", "OutcomeReader", "PlanOutcome", "assignment_record", "experiments_evaluate",
    "experiments_sync", "on_plan_outcomes", "plan_variant",
]
