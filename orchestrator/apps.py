from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Orchestrator"

    def ready(self) -> None:
        # The approvals app hands back decided approvals and its audit events through these callbacks:
        # it never imports the orchestrator.
        from approvals import api as approvals
        from orchestrator import (
            checks,  # noqa: F401  (registers the configuration checks)
            services,
        )

        approvals.on_resolved(services.step_gate_resolved)
        approvals.on_event(services.approval_event)
        # memory: `memory` agent steps act on their plan owner's memory; memory never reads our tables.
        from memory import api as memory
        from orchestrator.services import memory as step_memory

        memory.on_owner_of_plan(step_memory.owner_of_plan)

        # experiments: the experiments app reads ended plans through this (it never imports our models).
        from experiments import api as experiments
        from orchestrator import experimenting

        experiments.on_plan_outcomes(experimenting.plan_outcomes)
