"""Django's own error pages (handler400/403/404/500) for what never reaches a DRF view: a path that
matches no route (`/api/v1/tickets/abc/`), a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a crash. Under
/api/ they answer the API's one JSON shape; elsewhere (the admin) Django's usual pages."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from keybuzz.errors import error_body

logger = logging.getLogger(__name__)


def _api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
        return JsonResponse(
            error_body("request_too_large", f"The request body is larger than {limit // 1024} KiB."), status=413
        )
    return JsonResponse(error_body("invalid_request", "The request could not be read."), status=400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _api(request):
        return defaults.permission_denied(request, exception)
    return JsonResponse(error_body("permission_denied", "You do not have permission to do this."), status=403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body("not_found", "No such resource."), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _api(request):
        return defaults.server_error(request)
    return JsonResponse(error_body("server_error", "Something went wrong on our side; it has been logged."), status=500)
