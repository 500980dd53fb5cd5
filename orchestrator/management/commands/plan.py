"""python manage.py plan edit|rerun|retry PLAN_ID ... : change a plan from the terminal (issue 10).

    plan edit PLAN_ID --add '{"key": "more", "agent": "echo", "depends_on": ["a"]}' --remove old
                      --change 'b={"input": {"prompt": "shorter"}}' [--version N]
    plan rerun PLAN_ID KEY [--input '{"prompt": "again, differently"}'] [--follow]
    plan retry PLAN_ID [--follow]

The same services (and validation) as the REST API and MCP; ``--user`` is who the plan's events name.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console

from common.errors import DomainError
from orchestrator import editing, follow, services


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not JSON: {exc}") from None


class Command(BaseCommand):
    help = "Edit a running plan, re-run it from a step, or retry a failed or cancelled plan."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", default="cli", help="who the change is recorded as (created if missing)")
        actions = parser.add_subparsers(dest="action", required=True)
        edit = actions.add_parser("edit", help="add steps, remove or change pending ones")
        edit.add_argument("plan_id", type=uuid.UUID)
        edit.add_argument("--add", action="append", default=[], metavar="STEP_JSON", help="a step to add")
        edit.add_argument("--remove", action="append", default=[], metavar="KEY", help="a pending step to remove")
        edit.add_argument("--change", action="append", default=[], metavar="KEY=FIELDS_JSON",
                          help="fields to change in a pending step")
        edit.add_argument("--version", type=int, default=None, help="refuse if the plan changed since this version")
        rerun = actions.add_parser("rerun", help="run a finished step and what depends on it again")
        rerun.add_argument("plan_id", type=uuid.UUID)
        rerun.add_argument("key")
        rerun.add_argument("--input", default=None, metavar="JSON", help="the step's new input")
        retry = actions.add_parser("retry", help="run a failed or cancelled plan again from where it stopped")
        retry.add_argument("plan_id", type=uuid.UUID)
        for sub in (edit, rerun, retry):
            sub.add_argument("--follow", action="store_true", help="show progress until the plan ends")

    def handle(self, *args: Any, **options: Any) -> None:
        actor, _ = get_user_model().objects.get_or_create(username=options["user"])
        plan_id = options["plan_id"]
        try:
            if options["action"] == "edit":
                change = {}
                for item in options["change"]:
                    key, sep, fields = item.partition("=")
                    if not sep:
                        raise CommandError(f"--change takes KEY=FIELDS_JSON, not {item!r}")
                    change[key] = _json(fields, f"--change {key}")
                body = editing.edit_parse({"add": [_json(step, "--add") for step in options["add"]],
                                           "remove": options["remove"], "change": change})
                plan = services.plan_edit(plan_id=plan_id, edit=body, actor=actor, version=options["version"])
            elif options["action"] == "rerun":
                new_input = _json(options["input"], "--input") if options["input"] is not None else None
                body_input = editing.rerun_parse({"input": new_input}).input
                plan = services.step_rerun(plan_id=plan_id, key=options["key"], new_input=body_input, actor=actor)
            else:
                plan = services.plan_retry(plan_id=plan_id, actor=actor)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(f"plan {plan.id}: {options['action']} done; it is {plan.status} (version {plan.version})")
        if options["follow"]:
            follow.follow(plan.id, console=Console())
