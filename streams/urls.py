from django.contrib.auth import views as auth_views
from django.urls import path

from streams import pages, views

urlpatterns = [
    path("api/plans/<uuid:plan_id>/events/", views.plan_stream, name="plan-events"),
    path("api/plans/<uuid:plan_id>/snapshot/", views.plan_snapshot, name="plan-snapshot"),
    path("api/plans/<uuid:plan_id>/history/", views.plan_history, name="plan-history"),
    path("workflow/<uuid:plan_id>/stream", views.workflow_stream, name="workflow-stream"),  # guide names
    path("plans/<uuid:plan_id>/", views.plan_page, name="plan-live"),
    path("plans/", pages.plan_list, name="plan-list"),  # issue 15: the people's pages
    path("", pages.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
