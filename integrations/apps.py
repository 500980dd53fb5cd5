from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """What integrators get beside the core API: idempotent creates and webhooks."""

    name = "integrations"
    verbose_name = "Integrations"
    default_auto_field = "django.db.models.BigAutoField"
