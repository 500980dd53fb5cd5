from django.contrib.auth import views as auth_views
from django.urls import path

from streams import views

urlpatterns = [
    path("api/plans/<uuid:plan_id>/events/", views.plan_stream, name="plan-events"),
    path("api/plans/<uuid:plan_id>/snapshot/", views.plan_snapshot, name="plan-snapshot"),
    path("workflow/<uuid:plan_id>/stream", views.workflow_stream, name="workflow-stream"),  # guide names
    path("plans/<uuid:plan_id>/", views.plan_page, name="plan-live"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
