from django.urls import path

from tickets import views

urlpatterns = [
    path("tickets/", views.TicketListView.as_view(), name="ticket-list"),
    path("tickets/stats/", views.TicketStatsView.as_view(), name="ticket-stats"),
    path("tickets/<id:ticket_id>/", views.TicketDetailView.as_view(), name="ticket-detail"),
    path("tickets/<id:ticket_id>/messages/", views.TicketMessageCreateView.as_view(), name="ticket-messages"),
    path(
        "tickets/<id:ticket_id>/attachments/",
        views.TicketAttachmentUploadView.as_view(),
        name="ticket-attachment-upload",
    ),
    path(
        "tickets/<id:ticket_id>/attachments/<id:attachment_id>",
        views.TicketAttachmentView.as_view(),
        name="ticket-attachment",
    ),
    path(
        "tickets/<id:ticket_id>/messages/<id:message_id>/retry/",
        views.TicketReplyRetryView.as_view(),
        name="ticket-reply-retry",
    ),
    path("tickets/<id:ticket_id>/draft-reply", views.TicketReplyDraftView.as_view(), name="ticket-draft-reply"),
    path(
        "tickets/<id:ticket_id>/messages/<id:message_id>/translate",
        views.TicketMessageTranslateView.as_view(),
        name="ticket-message-translate",
    ),
]
