"""HTTP endpoints of the Amazon connection: OAuth start and callback, status, disconnect, and the
relay mailbox settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views import View
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from keybuzz.api import TenantAPIView
from keybuzz.errors import ApplicationError
from keybuzz.exception_handler import first_message
from keybuzz.permissions import IsTenantAdmin
from keybuzz.serializers import ErrorSerializer
from marketplaces import selectors
from marketplaces.models import ConnectionStatus
from marketplaces.serializers import (
    SELLER_ID_PATTERN,
    ConnectionSerializer,
    DisconnectInputSerializer,
    DisconnectSerializer,
    MailboxInputSerializer,
    MailboxSerializer,
    OAuthCallbackQuerySerializer,
    OAuthStartInputSerializer,
    OAuthStartSerializer,
    StatusSerializer,
)
from marketplaces.services import mailbox as mailbox_services
from marketplaces.services import oauth
from marketplaces.sources import default_source_name

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, expired or invalid token."),
    403: OpenApiResponse(ErrorSerializer, description="Agents may not change the Amazon connection."),
}
# The browser key of the OAuth flow: sent back only to the OAuth endpoints.
BROWSER_COOKIE = "keybuzz_amazon_oauth"
BROWSER_COOKIE_PATH = "/api/v1/marketplaces/amazon/oauth/"
STATUS_PRIORITY = [
    ConnectionStatus.CONNECTED,
    ConnectionStatus.NEEDS_REAUTH,
    ConnectionStatus.ERROR,
    ConnectionStatus.PENDING,
    ConnectionStatus.DISCONNECTED,
]


def _site_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


class AmazonOAuthStartView(TenantAPIView):
    permission_classes = [IsTenantAdmin]

    @extend_schema(
        request=OAuthStartInputSerializer,
        responses={
            200: OAuthStartSerializer,
            **ERRORS,
            503: OpenApiResponse(ErrorSerializer, description="`credentials_missing`: no SP-API app."),
        },
        tags=["amazon"],
    )
    def post(self, request: Request) -> Response:
        data = OAuthStartInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        started = oauth.amazon_oauth_start(
            tenant=self.tenant,
            user=self.user,
            marketplace=data.validated_data.get("marketplace", ""),
            region=data.validated_data.get("region", ""),
            site_url=_site_url(request),
            browser_key=request.COOKIES.get(BROWSER_COOKIE),
        )
        response = Response(
            {
                "authUrl": started.auth_url,
                "expiresAt": started.expires_at,
                "message": "Redirect user to authUrl to authorize KeyBuzz on Amazon Seller Central "
                "(the link is single use and expires at expiresAt).",
                "region": started.region,
                "marketplaceId": started.marketplace_id,
            }
        )
        # Binds the flow to this browser: the callback is only accepted with this cookie (the
        # frontend calls start with credentials; see docs/security.md).
        response.set_cookie(
            BROWSER_COOKIE,
            started.browser_key,
            max_age=settings.AMAZON_OAUTH_STATE_TTL,
            path=BROWSER_COOKIE_PATH,
            secure=not settings.DEBUG,
            httponly=True,
            samesite="Lax",
        )
        response["Cache-Control"] = "no-store"
        return response


class AmazonOAuthCallbackView(View):
    """Where Amazon sends the seller's browser back. No JWT: the single-use state, and the browser
    cookie set by start, authenticate. GET only: a HEAD (a link preview, a prefetch) must not spend
    the state.

    The browser is redirected to the frontend (`AMAZON_OAUTH_RETURN_URL`, else `FRONTEND_URL`) with
    `?amazon=connected` or `?amazon=error&code=<code>`; without a frontend URL a small HTML page is
    shown, with a 4xx status on failure. A client asking for JSON gets `{"code", "message"}`.
    """

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        query = OAuthCallbackQuerySerializer(data=request.GET.dict())
        try:
            if not query.is_valid():
                raise ApplicationError(f"Invalid callback: {first_message(query.errors)}", code="invalid_callback")
            params = query.validated_data
            connection = oauth.amazon_oauth_callback(
                state=params["state"],
                browser_key=request.COOKIES.get(BROWSER_COOKIE),
                code=params.get("spapi_oauth_code", ""),
                selling_partner_id=params.get("selling_partner_id", ""),
                error=params.get("error", ""),
                site_url=_site_url(request),
            )
        except ApplicationError as exc:
            response = _callback_result(request, ok=False, code=exc.code, message=exc.message, status=exc.status_code)
        else:
            response = _callback_result(
                request,
                ok=True,
                code="connected",
                status=200,
                seller=connection.selling_partner_id,
                message=f"Amazon seller {connection.selling_partner_id} is connected to KeyBuzz.",
            )
        # The URL carried a one-time code: never leak it through a Referer, never cache the answer.
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "no-store"
        return response


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode(query + list(params.items()))))


def _callback_result(
    request: HttpRequest, *, ok: bool, code: str, message: str, status: int, seller: str = ""
) -> HttpResponse:
    if _wants_json(request):
        body = (
            {"status": ConnectionStatus.CONNECTED, "sellingPartnerId": seller, "message": message}
            if ok
            else {"code": code, "message": message}
        )
        return JsonResponse(body, status=status)
    return_url = settings.AMAZON_OAUTH_RETURN_URL or settings.FRONTEND_URL
    if return_url:
        marker = {"amazon": "connected", "seller": seller} if ok else {"amazon": "error", "code": code}
        return HttpResponseRedirect(_with_query(return_url, marker))
    return render(
        request, "marketplaces/amazon_oauth_result.html", {"ok": ok, "code": code, "message": message}, status=status
    )


def _overall_status(connections: list) -> str:
    present = {c.effective_status for c in connections}
    for status in STATUS_PRIORITY:
        if status in present:
            return status
    return "NOT_CONNECTED"


class AmazonStatusView(TenantAPIView):
    """Any member of the tenant may look; only the tenant's own connections are listed."""

    @extend_schema(responses={200: StatusSerializer, 401: ERRORS[401]}, tags=["amazon"])
    def get(self, request: Request) -> Response:
        connections = list(selectors.amazon_connection_list(tenant=self.tenant))
        overall = _overall_status(connections)
        return Response(
            {
                "status": overall,
                "connected": overall == ConnectionStatus.CONNECTED,
                "appSource": selectors.current_app_source(),
                "connections": _connections_data(connections),
            }
        )


def _connections_data(connections: Any) -> Any:
    return ConnectionSerializer(connections, many=True, context={"fallback_source": default_source_name()}).data


class AmazonDisconnectView(TenantAPIView):
    permission_classes = [IsTenantAdmin]

    @extend_schema(
        request=DisconnectInputSerializer,
        parameters=[
            OpenApiParameter(
                "sellingPartnerId",
                str,
                required=False,
                pattern=SELLER_ID_PATTERN,
                description="Also accepted in the query string.",
            )
        ],
        responses={
            200: DisconnectSerializer,
            **ERRORS,
            404: ErrorSerializer,
            503: OpenApiResponse(ErrorSerializer, description="The token could not be deleted yet."),
        },
        tags=["amazon"],
    )
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        # The seller may come in the query string too; other query parameters are ignored, as everywhere.
        query = {k: v for k, v in request.query_params.items() if k in DisconnectInputSerializer.SELLER_KEYS}
        data = DisconnectInputSerializer(data={**query, **body})
        data.is_valid(raise_exception=True)
        seller = data.validated_data.get("sellingPartnerId") or data.validated_data.get("selling_partner_id", "")
        targets = oauth.amazon_disconnect(tenant=self.tenant, selling_partner_id=seller)
        connections = selectors.amazon_connection_list(tenant=self.tenant).filter(pk__in=[c.pk for c in targets])
        return Response(
            {
                "status": ConnectionStatus.DISCONNECTED,
                "message": "Amazon is disconnected and its stored token deleted. To revoke KeyBuzz at Amazon too, "
                "remove the app in Seller Central > Manage Your Apps.",
                "connections": _connections_data(connections),
            }
        )


def _check_data(check: mailbox_services.MailboxCheck) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": check.ok}
    if not check.ok:
        result.update(code=check.code, message=check.message)
    return result


def _mailbox_data(
    mailbox: Any, check: mailbox_services.MailboxCheck, smtp_check: mailbox_services.MailboxCheck | None
) -> dict[str, Any]:
    checks = {"imap": _check_data(check)}
    if smtp_check is not None:
        checks["smtp"] = _check_data(smtp_check)
    return dict(
        MailboxSerializer(
            {
                "connectionId": mailbox.connection_id,
                "imap": mailbox,
                "smtp": mailbox if mailbox.has_smtp else None,
                "check": checks,
                "updatedAt": mailbox.updated_at,
            }
        ).data
    )


CONNECTION_ID = OpenApiParameter(
    "connection_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A connection id (from the status)."
)
MAILBOX_NOT_FOUND = OpenApiResponse(
    ErrorSerializer,
    description="`connection_not_found` (no such connection in this tenant, other tenants' ids included), "
    "`mailbox_not_configured`.",
)


class AmazonMailboxView(TenantAPIView):
    """The relay mailbox of one connection: where Amazon forwards the buyers' messages."""

    permission_classes = [IsTenantAdmin]

    @extend_schema(
        parameters=[CONNECTION_ID],
        responses={200: MailboxSerializer, 401: ERRORS[401], 403: ERRORS[403], 404: MAILBOX_NOT_FOUND},
        tags=["amazon"],
    )
    def get(self, request: Request, connection_id: UUID) -> Response:
        mailbox = mailbox_services.mailbox_get(tenant=self.tenant, connection_id=connection_id)
        return Response(
            _mailbox_data(mailbox, mailbox_services.last_check(mailbox), mailbox_services.last_smtp_check(mailbox))
        )

    @extend_schema(
        parameters=[CONNECTION_ID],
        request=MailboxInputSerializer,
        responses={
            200: MailboxSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="`invalid_input`, `insecure_mailbox` (IMAP or SMTP security none to a host that is not "
                "loopback), `mailbox_host_not_allowed` (a private or loopback address the operator has not allowed).",
            ),
            401: ERRORS[401],
            403: ERRORS[403],
            404: MAILBOX_NOT_FOUND,
            409: OpenApiResponse(ErrorSerializer, description="`connection_disconnected`: connect Amazon again first."),
            503: OpenApiResponse(ErrorSerializer, description="`secret_store_unavailable`: nothing was saved."),
        },
        tags=["amazon"],
    )
    def put(self, request: Request, connection_id: UUID) -> Response:
        data = MailboxInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        imap = data.validated_data["imap"]
        smtp: mailbox_services.SmtpInput | mailbox_services.Keep | None = mailbox_services.KEEP
        if "smtp" in data.validated_data:
            given = data.validated_data["smtp"]
            smtp = (
                None
                if given is None
                else mailbox_services.SmtpInput(
                    host=given["host"],
                    port=given["port"],
                    security=given["security"],
                    username=given["username"],
                    password=given.get("password"),
                    from_address=given["fromAddress"],
                )
            )
        saved = mailbox_services.mailbox_settings_save(
            tenant=self.tenant,
            connection_id=connection_id,
            host=imap["host"],
            port=imap["port"],
            security=imap["security"],
            username=imap["username"],
            password=imap.get("password"),
            folder=imap["folder"],
            smtp=smtp,
        )
        return Response(_mailbox_data(saved.mailbox, saved.check, saved.smtp_check))

    @extend_schema(
        parameters=[CONNECTION_ID],
        responses={
            204: None,
            401: ERRORS[401],
            403: ERRORS[403],
            404: MAILBOX_NOT_FOUND,
            503: OpenApiResponse(ErrorSerializer, description="`secret_store_unavailable`: nothing was deleted."),
        },
        tags=["amazon"],
    )
    def delete(self, request: Request, connection_id: UUID) -> Response:
        mailbox_services.mailbox_settings_delete(tenant=self.tenant, connection_id=connection_id)
        return Response(status=204)
