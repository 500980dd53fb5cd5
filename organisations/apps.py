from django.apps import AppConfig


class OrganisationsConfig(AppConfig):
    """Tenants: every user belongs to exactly one organisation, which owns their plans, approvals, policies
    and budgets (docs/organisations.md)."""

    name = "organisations"
    verbose_name = "Organisations"
    default_auto_field = "django.db.models.BigAutoField"
