"""Serve the orchestrator as an MCP server: ``manage.py mcp_server`` (stdio, token in ORCH_MCP_TOKEN)
or ``manage.py mcp_server --http --port 8765`` (streamable HTTP at /mcp, a token on every request)."""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import AuthenticationFailed

from orchestrator.mcp_server import build_server, user_for_token


class Command(BaseCommand):
    help = "Serve the orchestrator's MCP tools over stdio (default) or streamable HTTP."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["http"]:
            app = build_server().streamable_http_app(stateless_http=True, json_response=True,
                                                     host=options["host"])
            uvicorn.run(app, host=options["host"], port=options["port"], log_level="warning")
            return
        key = os.environ.get("ORCH_MCP_TOKEN", "")
        if not key:
            raise CommandError("set ORCH_MCP_TOKEN to a REST API token (manage.py drf_create_token NAME)")
        try:
            user = user_for_token(key)
        except AuthenticationFailed as exc:
            raise CommandError(f"ORCH_MCP_TOKEN: {exc.detail}") from exc
        build_server(stdio_user=user).run("stdio")
