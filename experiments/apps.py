from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        # The agents app calls this before each agent call (a variant's prompt / model); it never imports us.
        from agents import api as agents
        from experiments import checks, hooks  # noqa: F401 - checks registers the experiments.yaml check

        agents.on_call(hooks.call_variant)
