"""The orchestrator as an MCP server (the official SDK's MCPServer): start a plan, read a plan, edit a running
plan, re-run from a step, retry a plan, list agents, list pending approvals, decide an approval. Served by
``manage.py mcp_server`` over stdio or streamable HTTP.

Auth and permissions are the REST API's: a DRF token (checked by DRF's own TokenAuthentication), and
every read and write goes through the same selectors and services, scoped to that user. Over HTTP the
token comes with each request (``Authorization: Token <key>`` or ``Bearer <key>``); over stdio, where
there are no headers, from ORCH_MCP_TOKEN, checked once at start. Errors come back as tool errors
carrying the domain error's code (``plan.cycle: ...``, ``not_found: ...``).

The SDK runs sync tools in worker threads, so the ORM is used as in any view; each tool gives its
pooled connection back when it ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connection
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from common.errors import DomainError


def user_for_token(key: str) -> User:
    """The active user owning API token ``key``. Raises AuthenticationFailed."""
    user, _ = TokenAuthentication().authenticate_credentials(key)
    return user


def _token_from(headers: Any) -> str | None:
    value = (headers or {}).get("authorization") or (headers or {}).get("Authorization") or ""
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() in ("token", "bearer") and key.strip() else None


def _json(data: Any) -> Any:
    """JSON-safe: UUIDs, datetimes and decimals as strings."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _tool[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Domain errors become tool errors with their code; the DB connection goes back to the pool."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc
        except AuthenticationFailed as exc:
            raise ToolError(f"auth.failed: {exc.detail}") from exc
        finally:
            connection.close()

    return wrapper


def build_server(*, stdio_user: User | None = None) -> MCPServer:
    """The MCP server. ``stdio_user`` serves requests without headers (stdio); HTTP requests must
    carry a token of their own."""
    server = MCPServer("agent-orchestrator", instructions=(
        "Plans of agent steps: start one from a template or explicit steps, follow it with plan_get, "
        "list the agents a plan may use, and decide the approvals that gate risky steps."))

    def who(ctx: Context) -> User:
        headers = ctx.headers
        key = _token_from(headers)
        if key is not None:
            return user_for_token(key)
        if headers is None and stdio_user is not None:
            return stdio_user
        raise AuthenticationFailed("send Authorization: Token <key> (a REST API token)")

    @server.tool()
    @_tool
    def plan_start(request: str, ctx: Context, template: str = "", inputs: dict[str, Any] | None = None,
                   steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Start a plan: a workflow template (with inputs), explicit steps [{key, agent, input,
        depends_on}], or neither (the LLM planner). Returns the plan with its steps."""
        from orchestrator import selectors, services
        from orchestrator.serializers import PlanDetailSerializer

        user = who(ctx)
        plan = services.plan_create(owner=user, request=request, template=template, inputs=inputs, steps=steps)
        return _json(PlanDetailSerializer(selectors.plan_detail(user=user, plan_id=plan.id)).data)

    @server.tool()
    @_tool
    def plan_get(plan_id: str, ctx: Context) -> dict[str, Any]:
        """A plan of yours with its steps, status, result and token / cost totals."""
        from orchestrator import selectors
        from orchestrator.serializers import PlanDetailSerializer

        return _json(PlanDetailSerializer(selectors.plan_detail(user=who(ctx), plan_id=plan_id)).data)

    @server.tool()
    @_tool
    def agents_list(ctx: Context) -> list[dict[str, Any]]:
        """The agents a plan may use, with kind, capabilities, health and circuit breaker state."""
        from agents.api import agent_list, agent_status
        from agents.views import agent_data

        who(ctx)
        return _json([agent_data(agent_status(spec.name)) for spec in agent_list()])

    @server.tool()
    @_tool
    def approvals_pending(ctx: Context) -> list[dict[str, Any]]:
        """The pending approvals you may see (approvers: all; others: their own plans')."""
        from dataclasses import asdict

        from approvals.api import approvals_visible

        return _json([asdict(a) for a in approvals_visible(user=who(ctx), status="pending")])

    @server.tool()
    @_tool
    def approval_decide(approval_id: str, decision: str, ctx: Context, edited_input: dict[str, Any] | None = None,
                        comment: str = "") -> dict[str, Any]:
        """Decide an approval: decision "approve" or "reject", optionally with an edited step input."""
        from dataclasses import asdict

        from approvals.api import approval_decide as decide

        info = decide(approval_id=uuid.UUID(approval_id) if _is_uuid(approval_id) else approval_id,
                      user=who(ctx), decision=decision, edited_input=edited_input, comment=comment)
        return _json(asdict(info))

    # issue 10: change a running plan, re-run from a step, retry a failed or cancelled plan (services/edits.py)
    @server.tool()
    @_tool
    def plan_edit(plan_id: str, ctx: Context, add: list[dict[str, Any]] | None = None,
                  remove: list[str] | None = None, change: dict[str, dict[str, Any]] | None = None,
                  version: int | None = None) -> dict[str, Any]:
        """Edit a running plan of yours: add steps [{key, agent, input, depends_on}], remove pending steps by
        key, change pending steps ({key: {agent?, input?, depends_on?, ...}}). Validated whole, applied whole.
        ``version``: the plan's version you edited against (refused with plan.edit_conflict if it changed)."""
        from orchestrator import editing, selectors
        from orchestrator.serializers import PlanDetailSerializer
        from orchestrator.services import edits

        user = who(ctx)
        plan = selectors.plan_get(user=user, plan_id=plan_id)
        body = editing.edit_parse({"add": add or [], "remove": remove or [], "change": change or {}})
        edits.plan_edit(plan_id=plan.id, edit=body, actor=user, version=version)
        return _json(PlanDetailSerializer(selectors.plan_detail(user=user, plan_id=plan.id)).data)

    @server.tool()
    @_tool
    def step_rerun(plan_id: str, key: str, ctx: Context, input: dict[str, Any] | None = None,
                   version: int | None = None) -> dict[str, Any]:
        """Run a finished step again (with a new input if given) and everything downstream of it; the plan
        runs again if it had ended. Nothing else is called again."""
        from orchestrator import editing, selectors
        from orchestrator.serializers import PlanDetailSerializer
        from orchestrator.services import edits

        user = who(ctx)
        plan = selectors.plan_get(user=user, plan_id=plan_id)
        body = editing.rerun_parse({"input": input})
        edits.step_rerun(plan_id=plan.id, key=key, new_input=body.input, actor=user, version=version)
        return _json(PlanDetailSerializer(selectors.plan_detail(user=user, plan_id=plan.id)).data)

    @server.tool()
    @_tool
    def plan_retry(plan_id: str, ctx: Context) -> dict[str, Any]:
        """Run a failed or cancelled plan of yours again from where it stopped (succeeded steps are kept)."""
        from orchestrator import selectors, services
        from orchestrator.serializers import PlanDetailSerializer

        user = who(ctx)
        plan = selectors.plan_get(user=user, plan_id=plan_id)
        services.plan_retry(plan_id=plan.id, actor=user)
        return _json(PlanDetailSerializer(selectors.plan_detail(user=user, plan_id=plan.id)).data)

    # memory: search and write your memory (memory/api.py), scoped to the token's user like the REST API.
    @server.tool()
    @_tool
    def memory_search(query: str, ctx: Context, k: int = 10, mode: str = "hybrid",
                      kinds: list[str] | None = None, agent: str | None = None) -> dict[str, Any]:
        """Search your memory (episodes of past plans, facts, notes): hybrid (vector + full text), vector or
        text. Returns ranked results with their scores."""
        from memory import api as memory
        from memory.shapes import MemorySearch, parse

        body = parse(MemorySearch, {"query": query, "k": k, "mode": mode, "kinds": kinds or [], "agent": agent})
        hits = memory.memory_search(owner=memory.Owner(user_id=who(ctx).pk), query=body.query, k=body.k,
                                    mode=body.mode, filters=memory.Filters(kinds=tuple(body.kinds), agent=body.agent))
        return {"results": [{**h.memory.as_dict(), "score": h.score, "similarity": h.similarity} for h in hits]}

    @server.tool()
    @_tool
    def memory_add(text: str, ctx: Context, kind: str = "fact", agent: str = "") -> dict[str, Any]:
        """Remember a fact (a near-duplicate updates the existing one: see ``action``) or a note."""
        from memory import api as memory
        from memory.shapes import MemoryCreate, parse

        user = who(ctx)
        body = parse(MemoryCreate, {"text": text, "kind": kind, "agent": agent})
        added = memory.memory_add(owner=memory.Owner(user_id=user.pk), text=body.text, kind=body.kind,
                                  agent=body.agent, source=f"user:{user.pk}")
        return {**added.memory.as_dict(), "action": added.action, "similarity": added.similarity}

    return server


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
