from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from keybuzz import views

api_v1 = [
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("me", views.MeView.as_view(), name="me"),
    path("members/", views.MemberListView.as_view(), name="member-list"),
    path("members/<id:user_id>/", views.MemberDetailView.as_view(), name="member-detail"),
    path("tenant/settings", views.TenantSettingsView.as_view(), name="tenant-settings"),
]

# Outside DRF's views (no route, a body too large, a crash): JSON under /api/, Django's pages elsewhere.
handler400 = "keybuzz.http_errors.bad_request"
handler403 = "keybuzz.http_errors.permission_denied"
handler404 = "keybuzz.http_errors.page_not_found"
handler500 = "keybuzz.http_errors.server_error"

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    # GET /metrics and /admin/dashboard/ (before the admin, whose catch-all would answer the latter).
    path("", include("operations.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/", include("marketplaces.urls")),
]
