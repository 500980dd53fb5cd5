"""python manage.py follow <plan id>: live progress of a plan in the terminal."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console

from orchestrator import follow
from orchestrator.models import Plan


class Command(BaseCommand):
    help = "Show a plan's progress until it ends, then its timeline and result."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("plan_id")
        parser.add_argument("--timeout", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            plan = Plan.objects.get(id=uuid.UUID(options["plan_id"]))
        except (Plan.DoesNotExist, ValueError):
            raise CommandError(f"no plan {options['plan_id']!r}") from None
        console = Console(highlight=False, soft_wrap=True)
        plan = follow.follow(plan.id, console=console, timeout=options["timeout"])
        follow.timeline(plan, console=console)
        follow.summary(plan, console=console)
