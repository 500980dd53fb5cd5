"""``mcp`` agents call one tool on an MCP server, with the official SDK (``mcp``), over stdio or
streamable HTTP. The step's ``input`` is the tool's arguments.

Options: ``tool``; for stdio ``command``, ``args``, ``env`` (added to a minimal default environment),
``cwd``; for HTTP ``url``, ``headers`` and ``header_env`` (header -> environment variable, read at call
time). The SDK is async: each call runs its own event loop in the worker thread (``anyio.run``) under
``anyio.fail_after(call.timeout)``; a stdio server is started for the call and stopped after it.

The result: the tool's structured content when it has one, else ``{"text": ...}`` of its text blocks.
A tool that answers ``isError`` fails the step (``agent.tool_error``, not retried); a server that cannot
be reached or times out is a transient error (retried).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult, TextContent

from agents.base import Agent, AgentCall, AgentResult, AgentSpec
from agents.egress import EgressPolicy, checked_address
from agents.errors import (
    AgentConfigError,
    AgentError,
    AgentTimeout,
    AgentToolError,
    EgressRefused,
    TransientAgentError,
)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _run_async[T](fn: Callable[[AgentCall], Awaitable[T]], call: AgentCall) -> T:
    """Run ``fn`` on a new event loop: in this thread (a worker thread has none), or in a helper thread
    when this one already runs a loop (anyio refuses to nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(fn, call)
    with ThreadPoolExecutor(1, thread_name_prefix="mcp-call") as pool:
        return pool.submit(anyio.run, fn, call).result()


class McpAgent(Agent):
    kind = "mcp"

    def __init__(self, spec: AgentSpec) -> None:
        super().__init__(spec)
        options = spec.options
        if not options.get("tool"):
            raise AgentConfigError(f"agent {spec.name!r}: an mcp agent needs 'tool'")
        self.tool = str(options["tool"])
        self.url = str(options.get("url") or "")
        self.command = str(options.get("command") or "")
        if bool(self.url) == bool(self.command):
            raise AgentConfigError(f"agent {spec.name!r}: an mcp agent needs 'url' (HTTP) or 'command' (stdio)")
        self.args = [str(a) for a in options.get("args") or []]
        self.env = {str(k): str(v) for k, v in (options.get("env") or {}).items()}
        self.cwd = options.get("cwd")
        self.headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
        self.header_env = {str(k): str(v) for k, v in (options.get("header_env") or {}).items()}
        self.policy = EgressPolicy.for_agent(spec.name, self.url, options) if self.url else None

    async def _guard(self, request: httpx2.Request) -> None:
        """The SSRF guard on every request of the MCP session (issue 11): the agent's exact origin only, its
        host resolving to allowed addresses. Checked before httpx2 connects (its own resolver then connects:
        unlike http agents, the address is not pinned), and redirects are not followed."""
        assert self.policy is not None
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        if not self.policy.same_origin(url.scheme, url.host, port):
            raise EgressRefused(f"agent {self.spec.name!r}: MCP request to another origin ({url.host}:{port})")
        await anyio.to_thread.run_sync(checked_address, self.policy, url.host, port)

    def _server(self, timeout: float) -> Any:
        if self.command:
            return StdioServerParameters(command=self.command, args=self.args, env=self.env or None, cwd=self.cwd)
        headers = {**self.headers, **{h: os.environ.get(env, "") for h, env in self.header_env.items()}}
        client = create_mcp_http_client(headers=headers, timeout=httpx2.Timeout(timeout))
        client.follow_redirects = False
        client.event_hooks["request"].append(self._guard)
        return streamable_http_client(self.url, http_client=client)

    async def _call(self, call: AgentCall) -> CallToolResult:
        with anyio.fail_after(call.timeout):
            async with Client(self._server(call.timeout), read_timeout_seconds=call.timeout) as client:
                return await client.call_tool(self.tool, call.input)

    def run(self, call: AgentCall) -> AgentResult:
        name = self.spec.name
        try:
            result = _run_async(self._call, call)
        except Exception as exc:  # anyio wraps errors in groups; classify the first real one
            leaf = _leaf(exc)
            if isinstance(leaf, EgressRefused):
                raise leaf from exc
            if isinstance(leaf, TimeoutError):
                raise AgentTimeout(f"agent {name!r}: the MCP call timed out after {call.timeout}s") from exc
            if isinstance(leaf, MCPError):
                raise AgentError(f"agent {name!r}: MCP error {leaf.code}: {leaf.error.message}",
                                 code="agent.mcp_error") from exc
            if isinstance(leaf, OSError | httpx2.TransportError):
                raise TransientAgentError(f"agent {name!r}: MCP server unreachable: {leaf!r}",
                                          code="agent.unreachable") from exc
            raise AgentError(f"agent {name!r}: MCP call failed: {type(leaf).__name__}: {leaf}",
                             code="agent.mcp_error") from exc
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        if result.is_error:
            raise AgentToolError(f"agent {name!r}: tool {self.tool!r} failed: {text[:500]}")
        call.chunk(text)
        output = result.structured_content if result.structured_content is not None else {"text": text}
        return AgentResult(output=output)
