from django.conf import settings
from django.urls import path

from marketplaces import messaging_views, views

urlpatterns = [
    path("marketplaces/amazon/oauth/start", views.AmazonOAuthStartView.as_view(), name="amazon-oauth-start"),
    path("marketplaces/amazon/oauth/callback", views.AmazonOAuthCallbackView.as_view(), name="amazon-oauth-callback"),
    path("marketplaces/amazon/status", views.AmazonStatusView.as_view(), name="amazon-status"),
    path("marketplaces/amazon/disconnect", views.AmazonDisconnectView.as_view(), name="amazon-disconnect"),
    path(
        "marketplaces/amazon/connections/<uuid:connection_id>/mailbox",
        views.AmazonMailboxView.as_view(),
        name="amazon-mailbox",
    ),
    path(
        "tickets/<id:ticket_id>/amazon/actions",
        messaging_views.TicketAmazonActionsView.as_view(),
        name="amazon-actions",
    ),
    path(
        "tickets/<id:ticket_id>/amazon/actions/<str:action>",
        messaging_views.TicketAmazonActionView.as_view(),
        name="amazon-action",
    ),
]

# The local fake Amazon is not even routed unless DEBUG is on (its views also refuse without it).
if settings.DEBUG and settings.AMAZON_USE_MOCK:
    from marketplaces import mock_views

    urlpatterns += [
        path("marketplaces/amazon/mock/apps/authorize/consent", mock_views.mock_consent, name="amazon-mock-consent"),
        path("marketplaces/amazon/mock/auth/o2/token", mock_views.mock_token, name="amazon-mock-token"),
    ]
