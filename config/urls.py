from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from agents.views import AgentViewSet
from approvals.views import ApprovalViewSet, workflow_approve
from orchestrator.health import health
from orchestrator.metrics import metrics_view
from orchestrator.views import PlanViewSet, orchestrate

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
router.register("agents", AgentViewSet, basename="agent")
router.register("approvals", ApprovalViewSet, basename="approval")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("agents", AgentViewSet.as_view({"get": "list"}), name="agents"),  # the guide's GET /agents
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("streams.urls")),  # live progress: SSE, snapshot, /plans/{id}/, login
    path("api/", include(router.urls)),
    path("workflow/<uuid:workflow_id>/approve", workflow_approve, name="workflow-approve"),
    path("orchestrate", orchestrate, name="orchestrate"),
    # ops (issue 12): Prometheus, loopback or METRICS_TOKEN only
    path("metrics", metrics_view, name="metrics"),
]
urlpatterns += [path("", include("memory.urls"))]  # memory: /api/memory/ (memory/urls.py)
