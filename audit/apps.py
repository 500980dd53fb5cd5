from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The append-only audit trail: who did what, when, from where (docs/integrators.md)."""

    name = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

