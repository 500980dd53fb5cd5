from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from memory import services


class Command(BaseCommand):
    help = ("Re-encrypt every memory under the newest key of MEMORY_ENCRYPTION_KEYS (after prepending a new key); "
            "--reindex also rebuilds the blind search index under the current MEMORY_BLIND_INDEX_KEY.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reindex", action="store_true")
        parser.add_argument("--batch", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        counts = services.reencrypt(batch=options["batch"], reindex=options["reindex"])
        self.stdout.write(f"re-encrypted {counts['memories']} memories and {counts['working']} working entries")
