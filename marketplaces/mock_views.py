"""The local fake Amazon: a Seller Central consent page and an LWA token endpoint.

Only for clicking through the OAuth flow on a laptop (`DEBUG=true AMAZON_USE_MOCK=true`). With
DEBUG off these views are not routed (see `marketplaces.urls`) and refuse to answer if reached
anyway. The token endpoint speaks LWA's wire format, so the real LWA client is exercised.
"""

from __future__ import annotations

import secrets

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from marketplaces.amazon.app import MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, mock_enabled

MOCK_SELLER_ID = "AMOCKSELLER1"
MOCK_CODE_PREFIX = "mock-"
MOCK_BAD_CODE = "mock-expired"  # the consent page's "invalid code" button: LWA answers invalid_grant
MOCK_REFRESH_PREFIX = "Atzr|mock-"


def _refuse_unless_enabled() -> None:
    if not mock_enabled():
        raise Http404("The fake Amazon exists only with DEBUG and AMAZON_USE_MOCK on.")


@require_GET
def mock_consent(request: HttpRequest) -> HttpResponse:
    """Stands in for `https://sellercentral.amazon.*/apps/authorize/consent`."""
    _refuse_unless_enabled()
    redirect_uri = request.GET.get("redirect_uri") or request.build_absolute_uri(reverse("amazon-oauth-callback"))
    response = render(
        request,
        "marketplaces/amazon_mock_consent.html",
        {
            "application_id": request.GET.get("application_id", ""),
            "state": request.GET.get("state", ""),
            "beta": request.GET.get("version") == "beta",
            "redirect_uri": redirect_uri,
            "code": MOCK_CODE_PREFIX + secrets.token_urlsafe(12),
            "bad_code": MOCK_BAD_CODE,
            "seller_id": MOCK_SELLER_ID,
        },
    )
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


def _lwa_error(error: str, description: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error_description": description, "error": error}, status=status)


@csrf_exempt
@require_POST
def mock_token(request: HttpRequest) -> HttpResponse:
    """Stands in for `POST https://api.amazon.com/auth/o2/token` (form-encoded in, JSON out)."""
    _refuse_unless_enabled()
    form = request.POST
    if form.get("client_id") != MOCK_CLIENT_ID or form.get("client_secret") != MOCK_CLIENT_SECRET:
        return _lwa_error("invalid_client", "Client authentication failed", status=401)
    grant = form.get("grant_type")
    if grant == "authorization_code":
        code = form.get("code", "")
        if not code.startswith(MOCK_CODE_PREFIX) or code == MOCK_BAD_CODE:
            return _lwa_error("invalid_grant", "The request has an invalid grant parameter : code")
        refresh_token = MOCK_REFRESH_PREFIX + secrets.token_urlsafe(24)
    elif grant == "refresh_token":
        refresh_token = form.get("refresh_token", "")
        if not refresh_token.startswith(MOCK_REFRESH_PREFIX):
            return _lwa_error("invalid_grant", "The request has an invalid grant parameter : refresh_token")
    else:
        return _lwa_error("unsupported_grant_type", "The grant type is not supported")
    response = JsonResponse(
        {
            "access_token": "Atza|mock-" + secrets.token_urlsafe(24),
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "expires_in": 3600,
        }
    )
    response["Cache-Control"] = "no-store"
    return response
