from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """What integrators get beside the core API: idempotent creates and webhooks."""

    name = "integrations"
    verbose_name = "Integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integrations import webhooks
        from orchestrator import events

        events.on_recorded(webhooks.events_recorded)
