"""``GET /api/agents/`` (and the guide's ``GET /agents``): the registry with each agent's health and
circuit breaker state. Read-only; token auth like the rest of the API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from agents.api import AgentStatus, agent_list, agent_status


class AgentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    queue = serializers.CharField()
    timeout = serializers.FloatField()
    fallback = serializers.CharField(allow_null=True)
    max_concurrency = serializers.IntegerField(allow_null=True)
    in_flight = serializers.IntegerField(allow_null=True)
    health = serializers.CharField()
    breaker = serializers.DictField()


def agent_data(status: AgentStatus) -> dict[str, Any]:
    spec, breaker = status.spec, status.breaker
    return {"name": spec.name, "kind": spec.kind, "description": spec.description,
            "capabilities": list(spec.capabilities), "queue": spec.queue, "timeout": spec.timeout,
            "fallback": spec.fallback, "max_concurrency": spec.max_concurrency, "in_flight": status.in_flight,
            "health": status.health,
            "breaker": {"state": breaker.state, "failures": breaker.failures, "open_until": breaker.open_until}}


class AgentViewSet(viewsets.ViewSet):
    """The agents of the registry (agents.yaml), with health and breaker state shared by all workers."""

    lookup_field = "name"
    lookup_value_regex = "[A-Za-z0-9_.-]+"

    @extend_schema(responses=AgentSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response([agent_data(agent_status(spec.name)) for spec in agent_list()])

    @extend_schema(responses=AgentSerializer)
    def retrieve(self, request: Request, name: str) -> Response:
        return Response(agent_data(agent_status(name)))  # UnknownAgent -> 404 agent.unknown
