"""``GET /api/experiments/`` and ``GET /api/experiments/{id}/report/``: for people who may view
experiments (staff with the ``experiments.view_experiment`` permission)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api import request_user
from common.errors import DomainError, NotFound
from experiments.models import Experiment
from experiments.selectors import experiment_report, experiments_all


class ExperimentForbidden(DomainError):
    code = "experiment.forbidden"
    http_status = 403


class ExperimentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    template = serializers.CharField()
    agent = serializers.CharField()
    sticky = serializers.CharField()
    variants = serializers.ListField(child=serializers.DictField())


def experiment_data(experiment: Experiment) -> dict[str, Any]:
    return {"id": experiment.id, "name": experiment.name, "description": experiment.description,
            "status": experiment.status, "template": experiment.template, "agent": experiment.agent,
            "sticky": experiment.sticky, "stop_metric": experiment.stop_metric,
            "variants": [{"name": v.name, "weight": v.weight, "status": v.status, "system_prompt": v.system_prompt,
                          "model": v.model, "agent": v.agent, "template": v.template}
                         for v in experiment.variants.all()]}


def _check_may_view(request: Request) -> None:
    if not request_user(request).has_perm("experiments.view_experiment"):
        raise ExperimentForbidden("you may not view experiments (experiments.view_experiment)")


class ExperimentViewSet(viewsets.ViewSet):
    """Experiments (experiments.yaml and the admin), and each one's report per variant."""

    @extend_schema(responses=ExperimentSerializer(many=True))
    def list(self, request: Request) -> Response:
        _check_may_view(request)
        return Response([experiment_data(e) for e in experiments_all()])

    @extend_schema(responses=dict, parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)])
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str) -> Response:
        _check_may_view(request)
        experiment = Experiment.objects.filter(id=int(pk) if pk.isdigit() else -1).first()
        if experiment is None:
            raise NotFound(f"no experiment {pk}", code="experiment.not_found")
        return Response(experiment_report(experiment).as_dict())
