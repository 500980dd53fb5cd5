from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from agents.views import AgentViewSet
from approvals.views import ApprovalViewSet, workflow_approve
from experiments.views import ExperimentViewSet
from orchestrator.health import health
from orchestrator.views import PlanViewSet, orchestrate

router = DefaultRouter()
router.register("plans", PlanViewSet, basename="plan")
router.register("agents", AgentViewSet, basename="agent")
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("experiments", ExperimentViewSet, basename="experiment")  # issue 14

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
]
