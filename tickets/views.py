"""The agents' ticket API: thin views that parse, call one selector or service, and render."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from keybuzz.api import TenantAPIView
from keybuzz.errors import ApplicationError, NotFoundError
from keybuzz.models import Tenant
from keybuzz.renderers import JSONRenderer
from keybuzz.serializers import ErrorSerializer
from tickets import assist, conf, pagination, selectors, services, uploads
from tickets.attachments import StoredFileMissing, attachment_open
from tickets.serializers import (
    TICKET_DETAIL_VALUES,
    TICKET_ROW_VALUES,
    AttachmentSerializer,
    AttachmentUploadSerializer,
    ReplyDraftSerializer,
    TicketDetailSerializer,
    TicketListQuerySerializer,
    TicketMessageCreateSerializer,
    TicketMessageSerializer,
    TicketPageSerializer,
    TicketStatsSerializer,
    TicketUpdateSerializer,
    TranslateInputSerializer,
    TranslationSerializer,
    ticket_detail_data,
    ticket_rows_data,
)

logger = logging.getLogger("tickets.api")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


AUTH_ERRORS = {
    401: _error("`not_authenticated`, `token_not_valid`, `user_inactive`: missing, expired or invalid token."),
    403: _error("`membership_revoked`, `tenant_inactive`."),
}
STORAGE_DOWN = {503: _error("`storage_unavailable`: the file storage cannot be reached now; try again later.")}
NOT_FOUND = {404: _error("`not_found`: no such ticket in the caller's tenant (other tenants' ids included).")}
TICKET_ID = OpenApiParameter("ticket_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Ticket id.")
# What a multipart request adds around the file (boundaries, part headers, a long file name).
UPLOAD_ENVELOPE_BYTES = 64 * 1024
MESSAGE_ID = OpenApiParameter("message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Reply id.")


def _validated(serializer: drf_serializers.Serializer, *, code: str = "invalid_input") -> dict[str, Any]:
    if not serializer.is_valid():
        field, problems = next(iter(serializer.errors.items()))
        problem = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(problem, dict):  # a list field's error is keyed by the item's index
            problem = next(iter(problem.values()))[0]
        message = str(problem) if field == "non_field_errors" else f"{field}: {problem}"
        raise ApplicationError(message, code=code, details=serializer.errors)
    return serializer.validated_data


def _detail(tenant: Tenant, ticket_id: int) -> Response:
    # Plain rows and dicts, not TicketDetailSerializer (the documented shape): see ticket_detail_data.
    row = selectors.ticket_row_get(tenant=tenant, ticket_id=ticket_id, fields=TICKET_DETAIL_VALUES)
    if row is None:
        raise NotFoundError("No such ticket.")
    messages = selectors.ticket_messages(tenant=tenant, ticket_id=ticket_id)
    files = selectors.ticket_files(tenant=tenant, ticket_id=ticket_id)
    return Response(ticket_detail_data(row, messages, files))


@functools.lru_cache(maxsize=256)
def _list_params(query: tuple[tuple[str, str | tuple[str, ...]], ...]) -> Mapping[str, Any]:
    """The list's parameters validated, once per distinct query in this process: the same few come
    again and again (the inbox's first page, which has none, the overdue tab, a filter, a page size),
    and DRF's validation took 50 us a request. Shared by the requests, hence read-only. A query with
    an error raises, and nothing is kept. A next page's query is new (its cursor is), and takes the
    place of the least recently used."""
    data = {key: list(value) if isinstance(value, tuple) else value for key, value in query}
    return MappingProxyType(dict(_validated(TicketListQuerySerializer(data=data), code="invalid_filter")))


class TicketListView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_list",
        summary="List the tenant's tickets",
        parameters=[TicketListQuerySerializer],
        responses={
            200: TicketPageSerializer,
            400: _error("`invalid_filter` (a filter's value), `invalid_cursor`."),
            **AUTH_ERRORS,
        },
        tags=["tickets"],
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params
        statuses = tuple(part.strip() for value in raw.getlist("status") for part in value.split(",") if part.strip())
        query = tuple(sorted((key, raw.get(key)) for key in raw if key != "status"))
        params = _list_params((*query, ("status", statuses)) if statuses else query)
        filters = selectors.TicketFilters(
            statuses=list(params.get("status", ())),
            channel=params.get("channel"),
            assignee=params.get("assignee"),
            connection_id=str(params["connection"]) if params.get("connection") else None,
            overdue=params.get("overdue"),
            q=params.get("q", "").strip(),
        )
        ordering = params.get("ordering") or pagination.DEFAULT_ORDERING
        size = min(params.get("limit") or conf.page_size(), conf.page_size_max())
        page = selectors.ticket_page(
            tenant=self.tenant,
            user_id=self.user.pk,
            filters=filters,
            ordering=ordering,
            cursor_token=params.get("cursor"),
            size=size,
            fields=TICKET_ROW_VALUES,  # plain rows, see tickets.serializers.ticket_rows_data
        )
        next_url = None
        if page.next_cursor:
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor)
        return Response(
            {
                "next": next_url,
                "next_cursor": page.next_cursor,
                "results": ticket_rows_data(page.rows),
            }
        )


class TicketDetailView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_retrieve",
        summary="A ticket with its messages",
        parameters=[TICKET_ID],
        responses={200: TicketDetailSerializer, **AUTH_ERRORS, **NOT_FOUND},
        tags=["tickets"],
    )
    def get(self, request: Request, ticket_id: int) -> Response:
        return _detail(self.tenant, ticket_id)

    @extend_schema(
        operation_id="tickets_update",
        summary="Change a ticket's status and/or assignee",
        parameters=[TICKET_ID],
        request=TicketUpdateSerializer,
        examples=[
            OpenApiExample("Resolve", value={"status": "RESOLVED"}, request_only=True),
            OpenApiExample("Take it", value={"assignee": 12}, request_only=True),
            OpenApiExample("Unassign", value={"assignee": None}, request_only=True),
        ],
        responses={
            200: TicketDetailSerializer,
            400: _error(
                "`invalid_input` (unknown status, nothing to update), "
                "`invalid_assignee` (not an active member of this tenant)."
            ),
            401: AUTH_ERRORS[401],
            403: _error(
                "`role_forbidden`: agents cannot close, reopen a closed ticket, or assign others; "
                "also `membership_revoked`, `tenant_inactive`."
            ),
            **NOT_FOUND,
            409: _error(
                "`invalid_transition`: the status change is not allowed; `details` has `from`, `to` and `allowed`."
            ),
        },
        tags=["tickets"],
    )
    def patch(self, request: Request, ticket_id: int) -> Response:
        data = _validated(TicketUpdateSerializer(data=request.data))
        services.ticket_update(
            tenant=self.tenant,
            ticket_id=ticket_id,
            actor=self.membership,
            status=data.get("status"),
            assignee_id=data["assignee"] if "assignee" in data else services.UNSET,
        )
        return _detail(self.tenant, ticket_id)


class TicketMessageCreateView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_messages_create",
        summary="Reply to the buyer, or add an internal note",
        parameters=[TICKET_ID],
        request=TicketMessageCreateSerializer,
        examples=[
            OpenApiExample("Reply", value={"body": "Your parcel left today."}, request_only=True),
            OpenApiExample("Note", value={"type": "note", "body": "Refund approved by Sam."}, request_only=True),
            OpenApiExample(
                "Reply with files",
                value={"body": "Here is your invoice.", "attachments": [12]},
                request_only=True,
            ),
        ],
        responses={
            201: TicketMessageSerializer,
            400: _error("`body_empty`, `body_too_long` (details.max_length), `too_many_attachments`, `invalid_input`."),
            **AUTH_ERRORS,
            404: _error(
                "`not_found`: no such ticket in the caller's tenant; `attachment_not_found`: an upload id that is "
                "not this ticket's (details.attachments)."
            ),
            409: _error("`ticket_closed`: reopen the ticket first; `attachment_already_sent`."),
            422: _error(
                "`reply_policy_violation`: the marketplace would refuse the reply (details.violations: "
                "[{rule, text, start, end, message}]); change it, or send `acknowledgeViolations: true`."
            ),
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int) -> Response:
        data = _validated(TicketMessageCreateSerializer(data=request.data))
        message = services.ticket_message_create(
            tenant=self.tenant,
            ticket_id=ticket_id,
            author=self.user,
            body=data["body"],
            kind=services.MessageKind(data["type"]),
            attachment_ids=data["attachments"],
            acknowledge_violations=data["acknowledgeViolations"],
        )
        return Response(TicketMessageSerializer(message).data, status=201)


class TicketAttachmentUploadView(TenantAPIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="tickets_attachments_upload",
        summary="Upload a file for a reply",
        description="Multipart, one `file`. The type is read from the content: JPEG, PNG, GIF, PDF or plain "
        "text (UTF-8). Name the returned id in a reply's `attachments` within a day; an upload no reply took "
        "is then deleted.",
        parameters=[TICKET_ID],
        request={"multipart/form-data": AttachmentUploadSerializer},
        responses={
            201: AttachmentSerializer,
            400: _error("`attachment_type_not_allowed` (details.allowed), `attachment_empty`, `invalid_input`."),
            **AUTH_ERRORS,
            **NOT_FOUND,
            413: _error("`attachment_too_large` (details.max_bytes)."),
            **STORAGE_DOWN,
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int) -> Response:
        declared = request.META.get("CONTENT_LENGTH") or ""
        limit = conf.upload_max_bytes()
        # Refused before the body is read: a 1 GB upload must not be spooled to disk first.
        if declared.isdigit() and int(declared) > limit + UPLOAD_ENVELOPE_BYTES:
            raise uploads.UploadTooLargeError(
                f"The file is larger than {limit // (1024 * 1024)} MB.", details={"max_bytes": limit}
            )
        data = _validated(AttachmentUploadSerializer(data=request.data))
        upload = data["file"]
        if upload.size is not None and upload.size > limit:
            raise uploads.UploadTooLargeError(
                f"The file is larger than {limit // (1024 * 1024)} MB.",
                details={"max_bytes": limit, "size": upload.size},
            )
        attachment = uploads.attachment_upload(
            tenant=self.tenant, ticket_id=ticket_id, filename=upload.name or "", data=upload.read()
        )
        return Response(AttachmentSerializer(attachment).data, status=201)


class TicketReplyRetryView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_replies_retry",
        summary="Send a FAILED reply again",
        description="Queues the reply for a fresh round of delivery attempts (`send_replies` sends it) and "
        "stops the ticket's response clock again, as when the reply was written.",
        parameters=[TICKET_ID, MESSAGE_ID],
        request=None,
        responses={
            200: TicketMessageSerializer,
            **AUTH_ERRORS,
            404: _error("`not_found`: no such ticket in the caller's tenant, or no such reply on it."),
            409: _error(
                "`reply_not_failed`: only a FAILED reply can be sent again (details.delivery_status); "
                "`ticket_closed`: reopen the ticket first."
            ),
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int, message_id: int) -> Response:
        message = services.reply_retry(tenant=self.tenant, ticket_id=ticket_id, message_id=message_id)
        return Response(TicketMessageSerializer(message).data)


class _JsonWhateverAccepted(BaseContentNegotiation):
    """A download answers the file whatever the client accepts (its type is the file's); anything
    else it answers (an error) is the API's JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> tuple[Any, str]:
        return JSONRenderer(), JSONRenderer.media_type


class TicketAttachmentView(TenantAPIView):
    content_negotiation_class = _JsonWhateverAccepted

    @extend_schema(
        operation_id="tickets_attachments_download",
        summary="Download a file of a ticket",
        description="The bytes, with the stored type and `Content-Disposition: attachment` (never shown inline; "
        "`X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy).",
        parameters=[
            TICKET_ID,
            OpenApiParameter("attachment_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Attachment id."),
        ],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            **AUTH_ERRORS,
            404: _error("`not_found`: no such file on a ticket of the caller's tenant (other tenants' ids included)."),
            **STORAGE_DOWN,
        },
        tags=["tickets"],
    )
    def get(self, request: Request, ticket_id: int, attachment_id: int) -> FileResponse:
        attachment = selectors.attachment_get(tenant=self.tenant, ticket_id=ticket_id, attachment_id=attachment_id)
        if attachment is None:
            raise NotFoundError("No such file on this ticket.")
        try:
            stored = attachment_open(attachment.storage_name)
        except StoredFileMissing:
            logger.error(
                "Attachment %s (tenant %s) is missing from storage: %s",
                attachment.pk,
                self.tenant.pk,
                attachment.storage_name,
            )
            raise NotFoundError("This file is no longer in storage.", code="attachment_missing") from None
        response = FileResponse(
            stored, as_attachment=True, filename=attachment.filename, content_type=attachment.content_type
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, no-store"
        return response


class TicketStatsView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_stats",
        summary="Counts for the inbox header",
        responses={200: TicketStatsSerializer, **AUTH_ERRORS},
        tags=["tickets"],
    )
    def get(self, request: Request) -> Response:
        stats = selectors.ticket_stats(tenant=self.tenant, user_id=self.user.pk)
        return Response(TicketStatsSerializer(stats).data)


AI_ERRORS = {
    403: _error(
        "`ai_disabled`: AI help is turned off for this tenant (tenant settings, `aiEnabled`); also "
        "`membership_revoked`, `tenant_inactive`."
    ),
    429: _error(
        "`ai_quota_exceeded`: the tenant's AI requests for today (UTC) are used up (details.limit, details.resetsAt)."
    ),
    502: _error(
        "`ai_unavailable`: the AI gateway failed, throttled, refused or answered something unusable; try again "
        "later (nothing was sent to anyone)."
    ),
    503: _error("`ai_not_configured`: no AI gateway is configured on this server."),
    504: _error("`ai_timeout`: the AI gateway did not answer in time (KEYBUZZ_AI_TIMEOUT_SECONDS)."),
}


class TicketReplyDraftView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_draft_reply",
        summary="Draft a reply with AI (a suggestion: nothing is sent)",
        description="A reply to the buyer's latest message, in the buyer's language, written from the thread, the "
        "order when known and the tenant's settings (tone, signature), with the channel's content rules applied: "
        "`violations` lists what they flag, exactly as posting the draft would. Nothing is stored or queued: an agent "
        "posts the (edited) draft with POST …/messages/. Counts against the tenant's daily AI limit.",
        parameters=[TICKET_ID],
        request=None,
        responses={
            200: ReplyDraftSerializer,
            401: AUTH_ERRORS[401],
            **NOT_FOUND,
            **AI_ERRORS,
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int) -> Response:
        draft = assist.ticket_reply_draft(tenant=self.tenant, ticket_id=ticket_id)
        return Response(ReplyDraftSerializer(draft).data)


class TicketMessageTranslateView(TenantAPIView):
    @extend_schema(
        operation_id="tickets_messages_translate",
        summary="Translate a message with AI",
        description="The message's text in the language `to`. Each (message, language) is translated once and "
        "cached: asking again answers the stored text (`cached: true`), without calling the AI gateway nor counting "
        "against the daily AI limit.",
        parameters=[
            TICKET_ID,
            OpenApiParameter("message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Message id."),
        ],
        request=TranslateInputSerializer,
        examples=[OpenApiExample("Into English", value={"to": "en"}, request_only=True)],
        responses={
            200: TranslationSerializer,
            400: _error("`invalid_input` (`to` missing or not a supported language), `message_too_long`."),
            401: AUTH_ERRORS[401],
            404: _error("`not_found`: no such ticket in the caller's tenant, or no such message on it."),
            **AI_ERRORS,
        },
        tags=["tickets"],
    )
    def post(self, request: Request, ticket_id: int, message_id: int) -> Response:
        data = _validated(TranslateInputSerializer(data=request.data))
        translation = assist.message_translate(
            tenant=self.tenant, ticket_id=ticket_id, message_id=message_id, language=data["to"]
        )
        return Response(TranslationSerializer(translation).data)
