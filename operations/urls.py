"""Routed at the site's root by keybuzz.urls, before the admin (whose catch-all would take
/admin/dashboard/ otherwise)."""

from django.contrib import admin
from django.urls import path

from operations import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(views.dashboard), name="ops-dashboard"),
]
