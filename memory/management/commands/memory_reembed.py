from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from memory import services


class Command(BaseCommand):
    help = ("Embed every memory again with MEMORY_EMBEDDING_PROVIDER / _MODEL, altering the vector columns to "
            "MEMORY_EMBEDDING_DIM if it changed (then rebuilding their HNSW indexes).")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = services.reembed()
        self.stdout.write(f"re-embedded {counts['reembedded']} memories at {counts['dimensions']} dimensions"
                          + (" (columns resized, indexes rebuilt)" if counts["resized"] else ""))
