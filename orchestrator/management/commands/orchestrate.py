"""python manage.py orchestrate "<request>" [--template NAME] [--input k=v]... [--follow]"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.markup import escape

from agents.api import llm_choices, llm_summary
from approvals import api as approvals
from common.errors import DomainError
from orchestrator import follow, services
from orchestrator.models import PlanEvent
from orchestrator.states import PlanStatus


class Command(BaseCommand):
    help = "Turn a request into a plan of agent steps and run it; --follow shows live progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request", help="what to do, in words")
        parser.add_argument("--template", default="", help="a workflow template (see workflows/)")
        parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                            help="a template input (repeatable)")
        parser.add_argument("--follow", action="store_true", help="show progress until the plan ends")
        parser.add_argument("--user", default="cli", help="the plan's owner (created if missing)")
        parser.add_argument("--timeout", type=float, default=None, help="stop following after this many s")
        parser.add_argument("--auto-approve", action="store_true",
                            help="approve every step that waits for approval (unattended runs)")
        parser.add_argument("--approver", default="cli-approver",
                            help="who --auto-approve decides as (created with the approval permission)")

    def handle(self, *args: Any, **options: Any) -> None:
        inputs = {}
        for item in options["input"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--input takes NAME=VALUE, not {item!r}")
            inputs[name] = value
        user, _ = get_user_model().objects.get_or_create(username=options["user"])
        try:
            plan = services.plan_create(owner=user, request=options["request"], template=options["template"],
                                        inputs=inputs)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        console = Console(highlight=False, soft_wrap=True)
        console.print(escape(f"Plan {plan.id} ({plan.template or 'LLM planner'}): {plan.request}"))
        console.print(escape(llm_summary(llm_choices())), highlight=False)
        if options["auto_approve"] and not options["follow"]:
            raise CommandError("--auto-approve needs --follow")
        if not options["follow"]:
            console.print(f"  follow it: python manage.py follow {plan.id}   API: /api/plans/{plan.id}/")
            return
        on_event = self._auto_approver(options["approver"], console) if options["auto_approve"] else None
        plan = follow.follow(plan.id, console=console, timeout=options["timeout"], on_event=on_event)
        follow.timeline(plan, console=console)
        follow.summary(plan, console=console)
        if plan.status != PlanStatus.SUCCEEDED:
            raise CommandError(f"plan {plan.status}" + (f": {plan.error_code}" if plan.error_code else ""))

    @staticmethod
    def _auto_approver(username: str, console: Console) -> Callable[[PlanEvent], None]:
        """Approve each approval as it is required, as ``username`` (recorded in the audit trail)."""
        approver, created = get_user_model().objects.get_or_create(username=username)
        if created:
            approver.user_permissions.add(Permission.objects.get(codename="decide_approval"))
            approver = get_user_model().objects.get(pk=approver.pk)

        def approve(event: PlanEvent) -> None:
            if event.type != "approval.required":
                return
            try:
                approvals.approval_decide(approval_id=event.data["approval_id"], user=approver, decision="approve",
                                          comment="--auto-approve")
                console.print(escape(f"  --auto-approve: {username} approved {event.step_key!r}"), highlight=False)
            except DomainError as exc:
                console.print(escape(f"  --auto-approve could not approve {event.step_key!r}: {exc.message}"),
                              highlight=False)

        return approve
