"""pgvector: agent memory (working, episodic, semantic) is stored as vectors in Postgres."""

from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    initial = True
    dependencies = []  # type: ignore[var-annotated]
    operations = [VectorExtension()]
