from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from memory import services


class Command(BaseCommand):
    help = "Run the memory.compact beat task's work now: cool idle memories, delete expired ones."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = services.compact()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
