"""OpenAPI post-processing (drf-spectacular): every operation documents the errors it can answer, in the
one envelope ``{"error": {"code", "message"}}``, so that a client (and schemathesis) knows every status."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        },
    },
    "required": ["error"],
}

_ALWAYS = {400: "Bad input (a code says what)", 401: "Not authenticated (see WWW-Authenticate)",
           403: "Not allowed", 404: "Not found, or not yours", 406: "Not acceptable",
           429: "Throttled (see Retry-After)"}
_WITH_BODY = {409: "Conflict with the current state", 413: "Request body too large",
              415: "Unsupported media type", 422: "Idempotency-Key reused with a different body"}


# OpenAPI links from a created plan to what a client does next with it (issue 11): clients and schemathesis's
# stateful tests follow them (create a plan -> read it, its snapshot and history, cancel it, retry it).
_PLAN_LINKS = {"GetPlan": ("api_plans_retrieve", "id"), "GetSnapshot": ("api_plans_snapshot_retrieve", "plan_id"),
               "GetHistory": ("api_plans_history_retrieve", "plan_id"), "CancelPlan": ("api_plans_cancel_create", "id"),
               "RetryPlan": ("api_plans_retry_create", "id")}


def add_plan_links(result: dict[str, Any]) -> None:
    created = result.get("paths", {}).get("/api/plans/", {}).get("post", {}).get("responses", {}).get("201")
    if created is None:
        return
    known = {op.get("operationId") for methods in result["paths"].values() for op in methods.values()
             if isinstance(op, dict)}
    created["links"] = {name: {"operationId": operation, "parameters": {parameter: "$response.body#/id"}}
                        for name, (operation, parameter) in _PLAN_LINKS.items() if operation in known}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                errors.update(_WITH_BODY)
            for status, description in errors.items():
                operation["responses"].setdefault(str(status), {"description": description, "content": ref})
    add_plan_links(result)
    return result


def _nullable(node: Any, defs: dict[str, Any]) -> Any:
    """JSON Schema (pydantic) -> OpenAPI 3.0: ``anyOf: [X, {type: null}]`` becomes X with ``nullable: true``
    (OpenAPI 3.0 has no null type); pydantic's ``$defs`` move to ``defs`` (the components) and
    ``#/$defs/NAME`` refers to the component of that name."""
    if isinstance(node, list):
        return [_nullable(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    for name, definition in (node.get("$defs") or {}).items():
        defs.setdefault(name, _nullable(definition, defs))
    node = {key: _nullable(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node.get("patternProperties"), dict):  # keys' pattern: not in OpenAPI 3.0, checked by the model
        patterns = list(node.pop("patternProperties").values())
        node["additionalProperties"] = patterns[0] if len(patterns) == 1 else {}
    if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
        node["$ref"] = "#/components/schemas/" + node["$ref"].removeprefix("#/$defs/")
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del node["anyOf"]
        inner = rest[0] if len(rest) == 1 else {"anyOf": rest}
        if "$ref" in inner:  # a $ref takes no siblings in OpenAPI 3.0
            inner = {"allOf": [inner]}
        node = {**inner, **node, "nullable": True}
    return node


def openapi_nullable(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Post-processing hook: pydantic models in the schema (the step shape, issue 10's edit shapes) as valid
    OpenAPI 3.0."""
    defs: dict[str, Any] = {}
    fixed: dict[str, Any] = _nullable(result, defs)
    schemas = fixed.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.items():
        schemas.setdefault(name, definition)
    return fixed
