"""Data only: existing approvals belong to the organisation of the person whose plan they gate."""

from django.db import migrations

FILL = """
    UPDATE approvals_approval AS a SET organisation_id = m.organisation_id
    FROM organisations_membership AS m
    WHERE m.user_id = a.requested_by_id AND a.organisation_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_approval_organisation"),
        ("organisations", "0002_default_organisation"),
    ]

    operations = [migrations.RunSQL(FILL, migrations.RunSQL.noop)]
