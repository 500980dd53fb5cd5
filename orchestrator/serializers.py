from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject

from orchestrator.models import Plan, Step
from orchestrator.planning import StepModel


@cache
def _fields_once(cls: type[serializers.Serializer]) -> tuple[serializers.Field, ...]:  # type: ignore[type-arg]
    return tuple(serializers.Serializer._readable_fields.fget(cls()))  # type: ignore[attr-defined]


@cache
def _reads(cls: type[serializers.ModelSerializer]) -> tuple[tuple[str, str | None, Any], ...]:  # type: ignore[type-arg]
    """Per readable field: its name, the model attribute it reads when that is a plain column (no relation, no
    dotted or callable source: ``getattr`` gives DRF's value) or None (DRF's own ``get_attribute``), the field."""
    model: Any = cls.Meta.model
    columns = {f.attname for f in model._meta.concrete_fields if not f.is_relation}
    return tuple((str(field.field_name), field.source if field.source in columns else None, field)
                 for field in _fields_once(cls))


class FieldsOnce:
    """For read-only serializers: DRF builds a ModelSerializer's fields again for every instance it renders
    (model introspection, a third of a plan detail answer's time). These serializers' fields hold no per-request
    state (no request-dependent field), so they are built once per class and reused. A field that reads a plain
    column is read with ``getattr`` rather than DRF's generic source walk (a third of the rest); the output is
    DRF's own (tests/api/test_plan_queries.py compares it with freshly built fields)."""

    @property
    def _readable_fields(self) -> tuple[serializers.Field, ...]:  # type: ignore[type-arg]
        return _fields_once(type(self))  # type: ignore[arg-type]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for name, column, field in _reads(type(self)):  # type: ignore[arg-type]
            if column is not None:
                value = getattr(instance, column)
            else:  # DRF's Serializer.to_representation, for this field
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
                if isinstance(value, PKOnlyObject) and value.pk is None:
                    value = None
            answer[name] = None if value is None else field.to_representation(value)
        return answer


class StepSerializer(FieldsOnce, serializers.ModelSerializer):  # type: ignore[type-arg,misc]
    class Meta:
        model = Step
        fields = ["id", "key", "agent", "status", "depends_on", "input", "output", "attempt", "replan", "error_code",
                  "error_message", "usage", "prompt_tokens", "completion_tokens", "cost", "queued_at",
                  "started_at", "finished_at"]


class PlanSerializer(FieldsOnce, serializers.ModelSerializer):  # type: ignore[type-arg,misc]
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    # issue 15: where a person watches the plan, and where a client streams its events
    page_url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()

    def get_page_url(self, plan: Plan) -> str:
        return f"/plans/{plan.id}/"

    def get_events_url(self, plan: Plan) -> str:
        return f"/api/plans/{plan.id}/events/"

    class Meta:
        model = Plan
        fields = ["id", "owner", "request", "template", "inputs", "status", "result", "error_code",
                  "error_message", "created_at", "started_at", "finished_at", "tokens_used", "cost_used",
                  "budget_tokens", "budget_cost", "cap_tokens", "cap_cost", "max_replans", "version", "page_url",
                  "events_url"]
        read_only_fields = ["tokens_used", "cost_used", "max_replans", "version"]


class PlanDetailSerializer(PlanSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(PlanSerializer.Meta):
        fields = [*PlanSerializer.Meta.fields, "steps"]


@extend_schema_field({"type": "array", "items": StepModel.model_json_schema()})
class StepsField(serializers.ListField):  # type: ignore[type-arg]
    """Explicit steps, passed whole to the one step model (planning.StepModel) that every surface shares:
    a bad step is refused by it with ``plan.invalid_schema``, never silently trimmed here."""

    child = serializers.JSONField()


class PlanCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    request = serializers.CharField(max_length=20000)
    template = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    inputs = serializers.DictField(required=False, default=dict)
    steps = StepsField(required=False, max_length=1000)
    budget_tokens = serializers.IntegerField(required=False, min_value=0, max_value=10**15,
                                             help_text="over it, a step waits for approval to exceed")
    budget_cost = serializers.DecimalField(required=False, max_digits=14, decimal_places=6, min_value=0)
    cap_tokens = serializers.IntegerField(required=False, min_value=0, max_value=10**15,
                                          help_text="a hard cap: never passed")
    cap_cost = serializers.DecimalField(required=False, max_digits=14, decimal_places=6, min_value=0)
    max_replans = serializers.IntegerField(required=False, min_value=0, max_value=10,
                                           help_text="how often the planner may extend the plan while it runs "
                                                     "(steps with replan: true); default ORCH_MAX_REPLANS")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("template") and attrs.get("steps") is not None:
            raise serializers.ValidationError("give a template or steps, not both")
        return attrs
