"""The API's one exception handler (REST_FRAMEWORK["EXCEPTION_HANDLER"]): `ApplicationError`s and
DRF's own exceptions become `{"code", "message"[, "details"]}` with their status."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from keybuzz.errors import ApplicationError, error_body


def first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return first_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        answer = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            answer["WWW-Authenticate"] = 'Bearer realm="api"'
        return answer
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    handled = exception_handler(exc, context)
    if handled is None:
        return None  # a real server fault: Django's 500 handling takes over
    response = handled

    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid_input", first_message(detail), detail)
    elif isinstance(detail, dict) and "code" in detail and "detail" in detail:
        # simplejwt's InvalidToken carries {"detail", "code", "messages"}.
        response.data = error_body(str(detail["code"]), str(detail["detail"]))
    else:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
        response.data = error_body(code, first_message(detail))
    return response
