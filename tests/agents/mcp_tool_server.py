"""A tiny MCP server for the tests, with the SDK's MCPServer (FastMCP in mcp 1.x): run as a script it
serves stdio; ``app()`` is its streamable-HTTP ASGI app."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("test-tools")


@server.tool()
def add(a: int, b: int) -> dict[str, Any]:
    """Adds two numbers."""
    return {"sum": a + b}


@server.tool()
def shout(text: str) -> str:
    """Upper-cases its text."""
    return text.upper()


@server.tool()
def explode(message: str = "boom") -> str:
    """Always fails."""
    raise ToolError(message)


def app() -> Any:
    return server.streamable_http_app(stateless_http=True, json_response=True)


if __name__ == "__main__":
    server.run("stdio")
