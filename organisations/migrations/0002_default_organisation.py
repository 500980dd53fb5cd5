"""Every user that existed before organisations joins the default organisation (which does not share plans
between members), so an install without tenants behaves exactly as before. New users join it on first use."""

from typing import Any

from django.conf import settings
from django.db import migrations


def forwards(apps: Any, schema_editor: Any) -> None:
    Organisation = apps.get_model("organisations", "Organisation")
    Membership = apps.get_model("organisations", "Membership")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    users = User.objects.filter(membership__isnull=True).values_list("id", flat=True)
    if not users.exists():
        return
    default, _ = Organisation.objects.get_or_create(
        slug=settings.DEFAULT_ORGANISATION_SLUG, defaults={"name": "Default organisation", "shared_plans": False})
    Membership.objects.bulk_create([Membership(user_id=user_id, organisation=default) for user_id in users],
                                   batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("organisations", "0001_organisations"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
