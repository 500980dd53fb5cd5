"""Data only (kept apart from the schema change): existing plans belong to their owner's organisation."""

from django.db import migrations

FILL = """
    UPDATE orchestrator_plan AS p SET organisation_id = m.organisation_id
    FROM organisations_membership AS m
    WHERE m.user_id = p.owner_id AND p.organisation_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrator", "0010_plan_organisation_and_budget"),
        ("organisations", "0002_default_organisation"),
    ]

    operations = [migrations.RunSQL(FILL, migrations.RunSQL.noop)]
