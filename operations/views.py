"""GET /metrics (Prometheus, bearer token) and the superadmin's dashboard (/admin/dashboard/)."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.contrib import admin
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from keybuzz.errors import error_body
from operations.charts import activity_chart
from operations.presenters import figure_rows
from operations.prometheus import metrics_exposition
from operations.selectors import (
    daily_activity,
    ops_figures,
    recent_poll_runs,
    spapi_daily_usage,
    tenant_by_slug,
    tenant_choices,
)

logger = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape. METRICS_TOKEN unset: 404 (the endpoint does not exist until an operator
    enables it; a 5xx would read as a server fault). No or malformed Authorization: 401. A wrong
    token: 403."""
    token = settings.METRICS_TOKEN
    if not token:
        return _error(404, "metrics_disabled", "Metrics are disabled: set METRICS_TOKEN to enable GET /metrics.")
    if request.method not in ("GET", "HEAD"):
        response = _error(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
        response["Allow"] = "GET, HEAD"
        return response
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        response = _error(
            401,
            "not_authenticated",
            "Authentication credentials were not provided: send Authorization: Bearer <METRICS_TOKEN>.",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _error(403, "permission_denied", "Invalid metrics token.")
    try:
        body, content_type = metrics_exposition(request.headers.get("Accept", ""))
    except DatabaseError as exc:
        logger.error("GET /metrics: database unavailable (%s)", type(exc).__name__)
        return _error(503, "service_unavailable", "Database unavailable.")
    scrape = HttpResponse(body, content_type=content_type)
    scrape["Cache-Control"] = "no-store"
    return scrape


def dashboard(request: HttpRequest) -> TemplateResponse:
    """Wrapped in `admin.site.admin_view` (urls): superadmins only, like the rest of the admin."""
    slug = request.GET.get("tenant", "").strip()
    tenant = tenant_by_slug(slug) if slug else None
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        "tenants": tenant_choices(),
        "selected": slug,
    }
    if slug and tenant is None:
        context["error"] = f"No tenant with the slug “{slug}”."
        return TemplateResponse(request, "admin/keybuzz_dashboard.html", context, status=404)
    figures = ops_figures(tenant=tenant)
    context.update(
        figures=figures,
        rows=figure_rows(figures),
        chart=activity_chart(daily_activity(tenant=tenant, days=30)),
        runs=recent_poll_runs(limit=10),
        spapi_days=spapi_daily_usage(days=14),
    )
    return TemplateResponse(request, "admin/keybuzz_dashboard.html", context)
