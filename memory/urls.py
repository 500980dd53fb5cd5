from django.urls import path

from memory import views

urlpatterns = [
    path("api/memory/", views.memory_collection, name="memory-list"),
    path("api/memory/search/", views.memory_search, name="memory-search"),
    path("api/memory/<str:memory_id>/", views.memory_detail, name="memory-detail"),
]
