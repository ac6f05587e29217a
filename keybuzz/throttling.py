"""What a locked-out login gets (django-axes' AXES_LOCKOUT_CALLABLE): 429 `too_many_attempts` with
`Retry-After`, as the API's one JSON shape under /api/ and as a short page for the admin's login."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from keybuzz.errors import error_body

MESSAGE = "Too many failed logins: try again in {minutes} minutes, or ask an administrator to unlock the account."


def client_address(request: HttpRequest) -> str:
    """The address of the client, as the nearest of the TRUSTED_PROXY_COUNT proxies in front saw it.

    Every proxy appends the address it received the request from to X-Forwarded-For, and the last
    one is REMOTE_ADDR; entries further left were written by the client and prove nothing. So the
    client is the (TRUSTED_PROXY_COUNT + 1)-th address from the right. (Written here rather than
    through django-ipware, whose proxy settings answer None or a forged entry for these chains.)"""
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    chain = [*forwarded, request.META.get("REMOTE_ADDR", "")]
    hops = max(settings.TRUSTED_PROXY_COUNT, 0)
    return chain[-(hops + 1)] if len(chain) > hops else chain[0]


def retry_after_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    seconds = retry_after_seconds()
    message = MESSAGE.format(minutes=max(1, round(seconds / 60)))
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("too_many_attempts", message), status=429)
        response["Cache-Control"] = "no-store"
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response
