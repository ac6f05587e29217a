"""Amazon's Messaging API actions on a ticket: the list Amazon allows for the order, an action queued
with its length limits and the replies' content rules checked first, then delivered by send_replies
through SP-API (faked at the HTTP boundary in the model's wire format) like any reply."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import requests
import responses
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError

from marketplaces.models import SpApiDailyUsage
from tests.factories import api_client, make_member, make_tenant
from tests.marketplaces.conftest import ACCESS_TOKEN, AMAZON_OAUTH
from tests.marketplaces.spapi_fakes import EU, actions_body, error_body, lwa_tokens, spapi_connection
from tests.tickets.factories import make_ticket
from tickets.delivery import replies_send_due
from tickets.models import DeliveryStatus, TicketMessage

pytestmark = [pytest.mark.django_db, *AMAZON_OAUTH]

ORDER = "302-1234567-7654321"
DE = "A1PA6795UKMFR9"
TEXT = "Your parcel will be delivered on Friday between 9:00 and 12:00; please make sure someone is at home."


@pytest.fixture(autouse=True)
def real_amazon(settings, monkeypatch):
    settings.AMAZON_SPAPI_ENDPOINT = ""
    settings.TICKETS_AMAZON_ADAPTER = ""
    monkeypatch.setattr("marketplaces.amazon.spapi.time.sleep", lambda seconds: None)  # 429 backoff


@pytest.fixture
def amazon():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        lwa_tokens(rsps)
        yield rsps


@pytest.fixture
def ticket():
    connection = spapi_connection(marketplace_ids=[DE])
    ticket = make_ticket(connection.tenant, connection_id=connection.id, order_id=ORDER)
    ticket.order_context, ticket.order_context_at = {"marketplaceId": DE, "status": "SHIPPED"}, timezone.now()
    ticket.save()
    return ticket


@pytest.fixture
def client(ticket):
    return api_client(make_member(ticket.tenant))


def actions_url(order_id: str = ORDER) -> re.Pattern[str]:
    return re.compile(re.escape(f"{EU}/messaging/v1/orders/{order_id}") + r"\?marketplaceIds=" + DE + "$")


def message_url(action: str, order_id: str = ORDER) -> re.Pattern[str]:
    return re.compile(re.escape(f"{EU}/messaging/v1/orders/{order_id}/messages/{action}") + r"\?marketplaceIds=" + DE)


def test_the_actions_amazon_allows_for_the_order_are_listed_with_their_limits(amazon, ticket, client):
    amazon.get(actions_url(), json=actions_body(ORDER, ["confirmDeliveryDetails", "unexpectedProblem", "warranty"]))

    response = client.get(f"/api/v1/tickets/{ticket.id}/amazon/actions")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["orderId"], body["marketplaceId"]) == (ORDER, DE)
    allowed = {a["name"]: a["allowed"] for a in body["actions"]}
    assert allowed == {
        "confirmDeliveryDetails": True,
        "confirmOrderDetails": False,
        "unexpectedProblem": True,
        "confirmCustomizationDetails": False,
        "confirmServiceDetails": False,
    }
    customization = next(a for a in body["actions"] if a["name"] == "confirmCustomizationDetails")
    assert (customization["minLength"], customization["maxLength"]) == (1, 800)
    [call] = [c for c in amazon.calls if "messaging" in c.request.url]
    assert call.request.headers["x-amz-access-token"] == ACCESS_TOKEN


def test_an_action_is_queued_then_sent_through_spapi_like_a_reply(amazon, ticket, client):
    sent = amazon.post(message_url("confirmDeliveryDetails"), status=201, json={})

    response = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/confirmDeliveryDetails", {"text": TEXT}, format="json"
    )

    assert response.status_code == 201, response.content
    queued = response.json()
    assert (queued["origin"], queued["action"], queued["delivery"]["status"]) == (
        "amazon_messaging",
        "confirmDeliveryDetails",
        "QUEUED",
    )
    assert sent.call_count == 0  # nothing leaves before send_replies
    ticket.refresh_from_db()
    assert ticket.response_due_at is None  # it answers the buyer: the clock stops

    assert replies_send_due().sent == 1
    assert sent.call_count == 1
    assert json.loads(amazon.calls[-1].request.body) == {"text": TEXT}
    message = TicketMessage.objects.get(pk=queued["id"])
    assert (message.delivery_status, message.delivery_ref) == (
        DeliveryStatus.SENT,
        "amazon-messaging:confirmDeliveryDetails",
    )
    assert SpApiDailyUsage.objects.get().calls == 1  # counted for the operators' dashboard


def test_text_outside_the_actions_limits_is_refused_before_anything_is_queued(amazon, ticket, client):
    response = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/confirmCustomizationDetails", {"text": "x" * 801}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "text_length"
    assert response.json()["details"] == {"min": 1, "max": 800, "length": 801}
    assert not TicketMessage.objects.filter(channel_action__gt="").exists()


def test_a_misspelt_field_is_refused_before_anything_is_queued(amazon, ticket, client):
    response = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/unexpectedProblem",
        {"text": TEXT, "acknowledgeViolation": True},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert list(response.json()["details"]) == ["acknowledgeViolation"]
    assert not TicketMessage.objects.filter(channel_action__gt="").exists()


def test_the_replies_content_rules_apply_to_actions(amazon, ticket, client):
    url = f"/api/v1/tickets/{ticket.id}/amazon/actions/unexpectedProblem"

    refused = client.post(url, {"text": "Sorry, call us on +49 30 1234567 to sort it out."}, format="json")
    accepted = client.post(
        url, {"text": "Sorry, call us on +49 30 1234567 to sort it out.", "acknowledgeViolations": True}, format="json"
    )

    assert refused.status_code == 422
    assert refused.json()["details"]["violations"][0]["text"] == "+49 30 1234567"
    assert accepted.status_code == 201


def test_unknown_actions_foreign_tickets_and_tickets_without_order(amazon, ticket, client):
    foreign = make_ticket(make_tenant(), order_id=ORDER)
    no_order = make_ticket(ticket.tenant, connection_id=ticket.connection_id, order_id="")

    unknown = client.post(f"/api/v1/tickets/{ticket.id}/amazon/actions/sendCoupon", {"text": TEXT}, format="json")
    other = client.get(f"/api/v1/tickets/{foreign.id}/amazon/actions")
    orderless = client.get(f"/api/v1/tickets/{no_order.id}/amazon/actions")

    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_action")
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    assert (orderless.status_code, orderless.json()["code"]) == (409, "ticket_without_order")
    assert [c for c in amazon.calls if "sellingpartnerapi" in c.request.url] == []


def test_amazon_errors_become_the_apis(amazon, ticket, client):
    url = f"/api/v1/tickets/{ticket.id}/amazon/actions"
    amazon.get(actions_url(), status=403, json=error_body("Unauthorized", "Access to requested resource is denied."))
    assert (client.get(url).status_code, client.get(url).json()["code"]) == (409, "amazon_forbidden")
    amazon.replace(responses.GET, actions_url(), status=404, json=error_body("NotFound", "Order not found"))
    assert client.get(url).json()["code"] == "amazon_order_not_found"


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (400, error_body("InvalidInput", "The text is not in the buyer's language."), DeliveryStatus.FAILED),
        (403, error_body("Unauthorized", "Access to requested resource is denied."), DeliveryStatus.FAILED),
        (503, error_body("ServiceUnavailable", "Try later."), DeliveryStatus.FAILED),  # may have been sent
    ],
)
def test_a_refused_or_unconfirmed_action_ends_failed_and_can_be_retried(amazon, ticket, client, status, body, outcome):
    amazon.post(message_url("confirmOrderDetails"), status=status, json=body)
    queued = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/confirmOrderDetails", {"text": TEXT}, format="json"
    ).json()

    replies_send_due()

    message = TicketMessage.objects.get(pk=queued["id"])
    assert message.delivery_status == outcome
    assert message.delivery_error
    amazon.replace(responses.POST, message_url("confirmOrderDetails"), status=201, json={})
    assert client.post(f"/api/v1/tickets/{ticket.id}/messages/{message.id}/retry/").status_code == 200
    assert replies_send_due().sent == 1


_REFUSED = requests.exceptions.ConnectionError(  # what requests raises when nothing answers the connect
    MaxRetryError(
        HTTPSConnectionPool("sellingpartnerapi-eu.amazon.com", 443),
        "https://sellingpartnerapi-eu.amazon.com/",
        NewConnectionError(HTTPSConnection("sellingpartnerapi-eu.amazon.com", 443), "Connection refused"),
    )
)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 429, "json": error_body("QuotaExceeded", "Slow down.")}, "QuotaExceeded"),
        ({"body": _REFUSED}, "the message was not sent"),  # no connection to Amazon: nothing left
    ],
    ids=["throttled", "never-reached-amazon"],
)
def test_an_action_amazon_did_not_take_stays_queued_and_goes_out_on_a_later_run(amazon, ticket, client, answer, error):
    post = amazon.post(message_url("unexpectedProblem"), **answer)
    queued = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/unexpectedProblem", {"text": TEXT}, format="json"
    ).json()

    first = replies_send_due()
    message = TicketMessage.objects.get(pk=queued["id"])
    assert (first.retrying, message.delivery_status) == (1, DeliveryStatus.QUEUED)
    assert error in message.delivery_error
    assert post.call_count == 4  # the client's own bounded retries, then the send waits for its backoff

    amazon.replace(responses.POST, message_url("unexpectedProblem"), status=201, json={})
    assert replies_send_due(now=timezone.now() + timedelta(hours=1)).sent == 1
    assert TicketMessage.objects.get(pk=message.pk).delivery_status == DeliveryStatus.SENT


def test_customization_details_carry_the_agents_files_through_amazons_uploads(amazon, ticket, client):
    png = b"\x89PNG\r\n\x1a\n" + bytes(300)
    upload = client.post(
        f"/api/v1/tickets/{ticket.id}/attachments/",
        {"file": SimpleUploadedFile("proof.png", png, content_type="image/png")},
        format="multipart",
    ).json()
    resource = f"messaging/v1/orders/{ORDER}/messages/confirmCustomizationDetails"
    s3_url = "https://s3.eu-west-1.amazonaws.com/buyer-seller-messaging/abc?X-Amz-Signature=secret"
    destination = amazon.post(
        re.compile(re.escape(f"{EU}/uploads/2020-11-01/uploadDestinations/{resource}") + r"\?.*"),
        status=201,
        json={"payload": {"uploadDestinationId": "dest-1", "url": s3_url, "headers": {}}},
    )
    put = amazon.put(s3_url, status=200)
    sent = amazon.post(message_url("confirmCustomizationDetails"), status=201, json={})

    queued = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/confirmCustomizationDetails",
        {"text": "Here is the proof of your engraving.", "attachments": [upload["id"]]},
        format="json",
    )
    replies_send_due()

    assert queued.status_code == 201, queued.content
    assert [a["filename"] for a in queued.json()["attachments"]] == ["proof.png"]
    assert (destination.call_count, put.call_count, sent.call_count) == (1, 1, 1)
    assert put.calls[0].request.body == png
    assert json.loads(sent.calls[0].request.body) == {
        "text": "Here is the proof of your engraving.",
        "attachments": [{"uploadDestinationId": "dest-1", "fileName": "proof.png"}],
    }
    assert TicketMessage.objects.get(pk=queued.json()["id"]).delivery_status == DeliveryStatus.SENT


def test_files_with_an_action_that_takes_none_are_refused(ticket, client):
    upload = client.post(
        f"/api/v1/tickets/{ticket.id}/attachments/",
        {"file": SimpleUploadedFile("proof.png", b"\x89PNG\r\n\x1a\n" + bytes(30))},
        format="multipart",
    ).json()

    response = client.post(
        f"/api/v1/tickets/{ticket.id}/amazon/actions/confirmDeliveryDetails",
        {"text": TEXT, "attachments": [upload["id"]]},
        format="json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "attachments_not_allowed")
