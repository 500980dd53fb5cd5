"""``/api/webhooks/``: an integrator's webhook endpoints (their own only) and each one's delivery log."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.api import EgressRefused, webhook_check
from common.api import UUID_PATTERN, request_user
from common.errors import DomainError, NotFound
from integrations import idempotency, webhooks
from integrations.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices), min_length=1,
                                   max_length=len(WebhookEvent.choices))
    url = serializers.URLField(max_length=2000)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "is_active", "created_at"]
        read_only_fields = ["id", "created_at"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="shown once: verify signatures with it")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = WebhookDelivery
        fields = ["id", "event_type", "payload", "status", "attempts", "next_attempt_at", "last_status_code",
                  "last_error", "created_at", "delivered_at"]


class WebhookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                     viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Your webhook endpoints. Deliveries are signed (``Webhook-Signature``), retried with backoff, and
    logged; URLs must pass the SSRF guard (no loopback, private or metadata addresses)."""

    serializer_class = WebhookEndpointSerializer
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        return WebhookEndpoint.objects.filter(owner=request_user(self.request)).order_by("-created_at")

    def get_object(self) -> WebhookEndpoint:
        found = self.get_queryset().filter(id=self.kwargs["pk"]).first()
        if found is None:
            raise NotFound(f"no webhook {self.kwargs['pk']}", code="webhook.not_found")
        return found

    @extend_schema(request=WebhookEndpointSerializer, responses={201: WebhookEndpointCreatedSerializer},
                   parameters=[idempotency.PARAMETER])
    @idempotency.idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = WebhookEndpointSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        url = body.validated_data["url"]
        try:
            webhook_check(url)
        except EgressRefused as exc:
            raise DomainError(exc.message, code="webhook.refused_address") from None
        endpoint = WebhookEndpoint.objects.create(owner=request_user(request), url=url,
                                                  events=sorted(set(body.validated_data["events"])),
                                                  is_active=body.validated_data.get("is_active", True),
                                                  secret=webhooks.new_secret())
        return Response(WebhookEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        """The endpoint's delivery log, newest first (at most 100)."""
        endpoint = self.get_object()
        return Response(WebhookDeliverySerializer(endpoint.deliveries.all()[:100], many=True).data)
