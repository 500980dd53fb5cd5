from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from agents.views import AgentViewSet
from approvals.views import ApprovalViewSet, workflow_approve
from audit.views import AuditViewSet
from experiments.views import ExperimentViewSet
from integrations.views import WebhookViewSet
from orchestrator import guide
from orchestrator import health as health_views
from orchestrator.health import health
from orchestrator.metrics import metrics_view
from orchestrator.views import PlanViewSet

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
router.register("agents", AgentViewSet, basename="agent")
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("audit", AuditViewSet, basename="audit")
router.register("experiments", ExperimentViewSet, basename="experiment")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The docs page is a static shell (issue 11): no authentication, so a bad token cannot break it.
    # The split view serves its init script as a file, so the Content-Security-Policy needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", authentication_classes=[],
                                                          permission_classes=[AllowAny]), name="api-docs"),
    path("", include("streams.urls")),  # live progress: SSE, snapshot, /plans/{id}/, login
    path("api/", include(router.urls)),
    path("workflow/<uuid:workflow_id>/approve", workflow_approve, name="workflow-approve"),
    # the guide's endpoints as written
    path("orchestrate", guide.orchestrate, name="orchestrate"),
    path("agents", guide.agents_guide, name="agents"),
    path("health/live", health_views.live, name="health-live"),
    path("health/ready", health_views.ready, name="health-ready"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),  # OAuth 2.0: /o/token/
    path("metrics", metrics_view, name="metrics"),  # Prometheus: loopback or METRICS_TOKEN only
]
urlpatterns += [path("", include("memory.urls"))]  # memory: /api/memory/ (memory/urls.py)
if settings.BENCH_ENDPOINTS:  # bench/api.py's baseline: a trivial DRF view (common/bench_views.py)
    from common.bench_views import ping

    urlpatterns += [path("api/_bench/ping/", ping, name="bench-ping")]
