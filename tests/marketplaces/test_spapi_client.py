"""The SP-API client against Amazon's wire format (Orders v2026-01-01, Messaging v1, Uploads
v2020-11-01, and the pre-signed S3 upload behind it), faked with `responses`: requests, answers and errors as the API models describe them; retries, token refresh,
throttling and the error family. No network, no database."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

import keybuzz
from keybuzz import http_retry
from marketplaces.amazon import spapi
from marketplaces.amazon.regions import UnknownRegion
from marketplaces.amazon.spapi import (
    HOSTS,
    MAX_MESSAGE_ATTACHMENTS,
    MESSAGING_ACTIONS,
    MESSAGING_ATTACHMENT_ACTIONS,
    MESSAGING_TEXT_LIMITS,
    MessageAttachment,
    MessagingAction,
    Order,
    OrderItem,
    OrderPackage,
    SpApiClient,
    SpApiError,
    SpApiForbidden,
    SpApiInvalidInput,
    SpApiNotFound,
    SpApiNotSent,
    SpApiThrottled,
    SpApiUnavailable,
    Throttle,
)
from tests.net import free_port

TOKEN = "Atza|IwEBISpApiTestAccessToken-first-0123456789"
TOKEN_2 = "Atza|IwEBISpApiTestAccessToken-second-0123456789"
SELLER = "A3FHEXAMPLEYWS"
EU_HOST = "https://sellingpartnerapi-eu.amazon.com"
ORDER_ID = "202-1234567-8901234"
UK = "A1F83G8C2ARO7P"
ORDER_URL = f"{EU_HOST}/orders/2026-01-01/orders/{ORDER_ID}"
ACTIONS_URL = f"{EU_HOST}/messaging/v1/orders/{ORDER_ID}"
TEXT = "Hello James, your parcel left our warehouse today and should reach you on Friday."

# The operations KeyBuzz calls, transcribed by hand from the models (operationIds: Orders v2026-01-01
# getOrder; Messaging v1 getMessagingActionsForOrder, createConfirmDeliveryDetails,
# createConfirmOrderDetails, createUnexpectedProblem, confirmCustomizationDetails,
# createConfirmServiceDetails; Uploads v2020-11-01 createUploadDestinationForResource): method, path
# template, required query parameters.
# getOrder's includedData is optional in the model; KeyBuzz always sends it, so it is listed.
# Uploads' `resource` is a greedy path parameter (x-amazon-spds-greedy-path-parameter): it spans
# several segments (see GREEDY_PARAMETERS).
OPERATIONS_TABLE: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("getOrder", "GET", "/orders/2026-01-01/orders/{orderId}", ("includedData",)),
    ("getMessagingActionsForOrder", "GET", "/messaging/v1/orders/{amazonOrderId}", ("marketplaceIds",)),
    (
        "createConfirmDeliveryDetails",
        "POST",
        "/messaging/v1/orders/{amazonOrderId}/messages/confirmDeliveryDetails",
        ("marketplaceIds",),
    ),
    (
        "createConfirmOrderDetails",
        "POST",
        "/messaging/v1/orders/{amazonOrderId}/messages/confirmOrderDetails",
        ("marketplaceIds",),
    ),
    (
        "createUnexpectedProblem",
        "POST",
        "/messaging/v1/orders/{amazonOrderId}/messages/unexpectedProblem",
        ("marketplaceIds",),
    ),
    (
        "confirmCustomizationDetails",
        "POST",
        "/messaging/v1/orders/{amazonOrderId}/messages/confirmCustomizationDetails",
        ("marketplaceIds",),
    ),
    (
        "createConfirmServiceDetails",
        "POST",
        "/messaging/v1/orders/{amazonOrderId}/messages/confirmServiceDetails",
        ("marketplaceIds",),
    ),
    (
        "createUploadDestinationForResource",
        "POST",
        "/uploads/2020-11-01/uploadDestinations/{resource}",
        ("marketplaceIds", "contentMD5"),
    ),
]
GREEDY_PARAMETERS = {"resource"}

# The Create…Request definitions of the Messaging model that have `attachments`, among KeyBuzz's five.
MODEL_ATTACHMENT_ACTIONS = {"confirmCustomizationDetails"}

# minLength/maxLength of `text` in each Create…Request of the Messaging model.
MODEL_TEXT_LIMITS = {
    "confirmDeliveryDetails": (1, 2000),
    "confirmOrderDetails": (1, 2000),
    "unexpectedProblem": (1, 2000),
    "confirmCustomizationDetails": (1, 800),
    "confirmServiceDetails": (1, 2000),
}


# --- Amazon's answers ---------------------------------------------------------------------------------


def order_body() -> dict[str, Any]:
    """A getOrder 200 with includedData=FULFILLMENT,PACKAGES, field by field as GetOrderResponse/Order
    define them (a merchant-fulfilled UK order, two items, one package)."""
    return {
        "order": {
            "orderId": ORDER_ID,
            "orderAliases": [{"aliasId": "UK-MERCHANT-ORDER-2024-001", "aliasType": "SELLER_ORDER_ID"}],
            "createdTime": "2024-12-25T09:15:00Z",
            "lastUpdatedTime": "2024-12-25T16:30:00Z",
            "programs": ["PRIME"],
            "salesChannel": {"channelName": "AMAZON", "marketplaceId": UK, "marketplaceName": "Amazon.co.uk"},
            "fulfillment": {
                "fulfillmentStatus": "SHIPPED",
                "fulfilledBy": "MERCHANT",
                "fulfillmentServiceLevel": "STANDARD",
                "shipByWindow": {"earliestDateTime": "2024-12-25T00:00:00Z", "latestDateTime": "2024-12-26T23:59:59Z"},
                "deliverByWindow": {
                    "earliestDateTime": "2024-12-27T00:00:00Z",
                    "latestDateTime": "2024-12-30T23:59:59Z",
                },
            },
            "orderItems": [
                {
                    "orderItemId": "20212345678901",
                    "quantityOrdered": 3,
                    "programs": ["TRANSPARENCY"],
                    "product": {
                        "asin": "B08DFPV54V",
                        "title": "Echo Dot (4th Gen) | Smart speaker with Alexa | Charcoal",
                        "sellerSku": "ECHO-DOT-4-UK-CHARCOAL-3PACK",
                        "condition": {"conditionType": "NEW", "conditionSubtype": "NEW", "conditionNote": ""},
                        "price": {
                            "unitPrice": {"amount": "29.99", "currencyCode": "GBP"},
                            "priceDesignation": "BUSINESS_PRICE",
                        },
                    },
                    "fulfillment": {"quantityFulfilled": 3, "quantityUnfulfilled": 0},
                },
                {
                    "orderItemId": "20212345678902",
                    "quantityOrdered": 1,
                    "product": {"asin": "B07XJ8C8F5", "title": "Echo Show 5 Stand", "sellerSku": "STAND-5"},
                },
            ],
            "packages": [
                {
                    "packageReferenceId": "UK-PKG-2024-001",
                    "createdTime": "2024-12-25T16:45:00Z",
                    "packageStatus": {"status": "IN_TRANSIT", "detailedStatus": "OUT_FOR_DELIVERY"},
                    "carrier": "Royal Mail",
                    "shipTime": "2024-12-26T14:00:00Z",
                    "shippingService": "Royal Mail Tracked 48",
                    "trackingNumber": "RR123456789GB",
                    "packageItems": [{"orderItemId": "20212345678901", "quantity": 3}],
                }
            ],
        }
    }


def actions_body(order_id: str = ORDER_ID, marketplace: str = UK) -> dict[str, Any]:
    """getMessagingActionsForOrder's 200 (HAL), as the model's sandbox answer lists them."""
    names = [
        "confirmCustomizationDetails",
        "confirmDeliveryDetails",
        "legalDisclosure",
        "confirmOrderDetails",
        "confirmServiceDetails",
        "unexpectedProblem",
        "warranty",
        "attributes",
    ]
    base = f"/messaging/v1/orders/{order_id}"
    return {
        "_links": {
            "actions": [
                {
                    "href": f"{base}/{'attributes' if n == 'attributes' else 'messages/' + n}?marketplaceIds={marketplace}",
                    "name": n,
                }
                for n in names
            ],
            "self": {"href": f"{base}?marketplaceIds={marketplace}"},
        },
        "_embedded": {"actions": []},
    }


# Attachments: the Uploads API's destination for a confirmCustomizationDetails message, and the pre-signed
# S3 URLs it hands out (shaped like the model's example: the query signs the upload, so it is a secret).
UPLOAD_DESTINATION_URL = f"{EU_HOST}/uploads/2020-11-01/uploadDestinations/messaging/v1/orders/{ORDER_ID}/messages/confirmCustomizationDetails"
DESTINATION_IDS = {1: "5d4e42b5-1d6e-44e8-a89c-2abfca0625bb", 2: "9a1c07e2-52f4-4c1e-b0d3-7f3e2c9b8a11"}
S3_SIGNATURE = "d4f85c5f1a32a788a8d54e3f00a2a08af45be5b83551cdd81c82ae353dfcdfd4"
S3_CREDENTIAL = "AKIAW5VUA47ENEOYT7RC%2F20190701%2Feu-west-1%2Fs3%2Faws4_request"
S3_URLS = {
    n: (
        f"https://s3.eu-west-1.amazonaws.com/buyer-seller-messaging-draft-attachment-eumarketplace/%2F067/"
        f"{destination_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20250110T101500Z"
        f"&X-Amz-SignedHeaders=content-md5%3Bhost%3Bx-amz-server-side-encryption&X-Amz-Expires=900"
        f"&X-Amz-Credential={S3_CREDENTIAL}&X-Amz-Signature={S3_SIGNATURE[:-1]}{n}"
    )
    for n, destination_id in DESTINATION_IDS.items()
}
PNG = MessageAttachment("engraving-proof.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
PDF = MessageAttachment("Épreuve Smith.pdf", "application/pdf", b"%PDF-1.7\n" + b"customization proof\n" * 50)


def md5_of(data: bytes) -> str:
    """What contentMD5 and Content-MD5 carry: the base64 of the MD5 digest (not its hex)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def destination_body(n: int, attachment: MessageAttachment) -> dict[str, Any]:
    """createUploadDestinationForResource's 201, as CreateUploadDestinationResponse/UploadDestination
    define it (the headers are the ones the pre-signed URL was signed with)."""
    return {
        "payload": {
            "uploadDestinationId": DESTINATION_IDS[n],
            "url": S3_URLS[n],
            "headers": {"Content-MD5": md5_of(attachment.data), "x-amz-server-side-encryption": "aws:kms"},
        }
    }


S3_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message><X-Amz-Expires>900</X-Amz-Expires>"
    f"<CanonicalRequest>PUT /%2F067/x X-Amz-Credential={S3_CREDENTIAL}</CanonicalRequest>"
    f"<SignatureProvided>{S3_SIGNATURE[:-1]}1</SignatureProvided><RequestId>4442587FB7D0A2F9</RequestId></Error>"
)


def errors(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "details": details}]}


EXPIRED = errors(
    "Unauthorized", "Access to requested resource is denied.", "The access token you provided has expired."
)
ROLE_MISSING = errors("Unauthorized", "Access to requested resource is denied.", "")
THROTTLED = errors("QuotaExceeded", "You exceeded your quota for the requested resource.")
SERVER_ERROR = errors("InternalFailure", "We encountered an internal error. Please try again.")


# --- Fixtures -----------------------------------------------------------------------------------------


class FakeTokens:
    """A TokenSource: hands out TOKEN, then TOKEN_2 after invalidate()."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens or (TOKEN, TOKEN_2))
        self.index = 0
        self.gets = 0
        self.invalidated = 0

    def get(self) -> str:
        self.gets += 1
        return self.tokens[min(self.index, len(self.tokens) - 1)]

    def invalidate(self) -> None:
        self.invalidated += 1
        self.index += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def amazon():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def make(tokens, sleeps):
    def make(**kwargs: Any) -> SpApiClient:
        options: dict[str, Any] = {
            "region": "EU",
            "tokens": tokens,
            "seller_key": SELLER,
            "throttle": Throttle(),  # its own buckets: no state shared between tests
            "sleep": sleeps.append,
        }
        options.update(kwargs)
        return SpApiClient(**options)

    return make


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def path_of(call: Any) -> str:
    return urlsplit(call.request.url).path


# --- getOrder -----------------------------------------------------------------------------------------


def test_get_order_maps_the_v2026_answer(amazon, make):
    amazon.get(ORDER_URL, json=order_body())
    order = make().get_order(ORDER_ID)
    assert order == Order(
        order_id=ORDER_ID,
        status="SHIPPED",
        purchase_date="2024-12-25T09:15:00Z",
        latest_ship_date="2024-12-26T23:59:59Z",
        latest_delivery_date="2024-12-30T23:59:59Z",
        marketplace_id=UK,
        fulfillment_channel="MERCHANT",
        items=(
            OrderItem(
                asin="B08DFPV54V",
                sku="ECHO-DOT-4-UK-CHARCOAL-3PACK",
                title="Echo Dot (4th Gen) | Smart speaker with Alexa | Charcoal",
                quantity=3,
                price="29.99",
                currency="GBP",
            ),
            OrderItem(asin="B07XJ8C8F5", sku="STAND-5", title="Echo Show 5 Stand", quantity=1, price="", currency=""),
        ),
        packages=(OrderPackage(carrier="Royal Mail", tracking_number="RR123456789GB", status="IN_TRANSIT"),),
    )
    call = amazon.calls[0]
    assert call.request.method == "GET"
    assert query_of(call) == {"includedData": ["FULFILLMENT,PACKAGES"]}


def test_order_as_dict_is_json_safe_camel_case(amazon, make):
    amazon.get(ORDER_URL, json=order_body())
    data = make().get_order(ORDER_ID).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "orderId": ORDER_ID,
        "status": "SHIPPED",
        "purchaseDate": "2024-12-25T09:15:00Z",
        "latestShipDate": "2024-12-26T23:59:59Z",
        "latestDeliveryDate": "2024-12-30T23:59:59Z",
        "marketplaceId": UK,
        "fulfillmentChannel": "MERCHANT",
        "items": [
            {
                "asin": "B08DFPV54V",
                "sku": "ECHO-DOT-4-UK-CHARCOAL-3PACK",
                "title": "Echo Dot (4th Gen) | Smart speaker with Alexa | Charcoal",
                "quantity": 3,
                "price": "29.99",
                "currency": "GBP",
            },
            {
                "asin": "B07XJ8C8F5",
                "sku": "STAND-5",
                "title": "Echo Show 5 Stand",
                "quantity": 1,
                "price": "",
                "currency": "",
            },
        ],
        "packages": [{"carrier": "Royal Mail", "trackingNumber": "RR123456789GB", "status": "IN_TRANSIT"}],
    }


def test_get_order_missing_parts_become_empty(amazon, make):
    # An FBA order without FULFILLMENT data or packages, and odd values where strings are expected.
    body = {"order": {"orderId": ORDER_ID, "orderItems": [{"quantityOrdered": "2", "product": {"asin": 7}}, "x"]}}
    amazon.get(ORDER_URL, json=body)
    order = make().get_order(ORDER_ID)
    assert order.status == order.purchase_date == order.latest_ship_date == order.marketplace_id == ""
    assert order.fulfillment_channel == ""
    assert order.items == (OrderItem(asin="", sku="", title="", quantity=2, price="", currency=""),)
    assert order.packages == ()


def test_get_order_fulfilled_by_amazon(amazon, make):
    body = order_body()
    body["order"]["fulfillment"]["fulfilledBy"] = "AMAZON"
    del body["order"]["packages"]  # PACKAGES is for merchant-fulfilled orders only
    amazon.get(ORDER_URL, json=body)
    order = make().get_order(ORDER_ID)
    assert order.fulfillment_channel == "AMAZON" and order.packages == ()


# --- Hosts and headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("NA", "https://sellingpartnerapi-na.amazon.com"),
        ("EU", "https://sellingpartnerapi-eu.amazon.com"),
        ("FE", "https://sellingpartnerapi-fe.amazon.com"),
        ("eu-west-1", "https://sellingpartnerapi-eu.amazon.com"),
    ],
)
def test_region_picks_the_host(amazon, make, region, host):
    amazon.get(f"{host}/orders/2026-01-01/orders/{ORDER_ID}", json=order_body())
    make(region=region).get_order(ORDER_ID)
    assert amazon.calls[0].request.url.startswith(f"{host}/orders/2026-01-01/orders/{ORDER_ID}?")


def test_hosts_table():
    assert HOSTS == {
        "NA": "https://sellingpartnerapi-na.amazon.com",
        "EU": "https://sellingpartnerapi-eu.amazon.com",
        "FE": "https://sellingpartnerapi-fe.amazon.com",
    }


def test_endpoint_overrides_the_region_host(amazon, make):
    amazon.get(f"http://127.0.0.1:8931/fake-spapi/orders/2026-01-01/orders/{ORDER_ID}", json=order_body())
    make(region="FE", endpoint="http://127.0.0.1:8931/fake-spapi/").get_order(ORDER_ID)
    assert len(amazon.calls) == 1


def test_unknown_region_is_refused(make):
    with pytest.raises(UnknownRegion):
        make(region="mars")


def test_headers_token_user_agent_accept_and_timeout(amazon, make):
    amazon.get(ORDER_URL, json=order_body())
    amazon.post(f"{ACTIONS_URL}/messages/confirmOrderDetails", status=201)
    client = make(timeout=7.5)
    client.get_order(ORDER_ID)
    client.send_message("confirmOrderDetails", ORDER_ID, UK, TEXT)
    get, post = amazon.calls
    for call in (get, post):
        headers = call.request.headers
        assert headers["x-amz-access-token"] == TOKEN
        assert headers["User-Agent"] == f"KeyBuzz/{keybuzz.__version__} (Language=Python)"
        assert "Authorization" not in headers  # no SigV4
        assert call.request.req_kwargs["timeout"] == 7.5
    assert get.request.headers["Accept"] == "application/json"
    assert "Content-Type" not in get.request.headers
    assert post.request.headers["Content-Type"] == "application/json"
    assert "application/hal+json" in post.request.headers["Accept"]  # Messaging produces HAL


# --- Messaging ----------------------------------------------------------------------------------------


def test_messaging_actions_lists_the_hal_links(amazon, make):
    amazon.get(ACTIONS_URL, json=actions_body(), match=[matchers.query_param_matcher({"marketplaceIds": UK})])
    actions = make().messaging_actions(ORDER_ID, UK)
    names = [action.name for action in actions]
    assert names == [
        "confirmCustomizationDetails",
        "confirmDeliveryDetails",
        "legalDisclosure",
        "confirmOrderDetails",
        "confirmServiceDetails",
        "unexpectedProblem",
        "warranty",
        "attributes",
    ]
    assert actions[1] == MessagingAction(
        name="confirmDeliveryDetails",
        href=f"/messaging/v1/orders/{ORDER_ID}/messages/confirmDeliveryDetails?marketplaceIds={UK}",
    )
    assert set(MESSAGING_ACTIONS) <= set(names)


def test_messaging_action_without_name_is_named_from_its_href(amazon, make):
    body = {"_links": {"actions": [{"href": f"/messaging/v1/orders/{ORDER_ID}/messages/warranty?marketplaceIds={UK}"}]}}
    amazon.get(ACTIONS_URL, json=body)
    assert make().messaging_actions(ORDER_ID, UK) == [
        MessagingAction(name="warranty", href=body["_links"]["actions"][0]["href"])
    ]


def test_messaging_constants_match_the_model():
    assert MESSAGING_TEXT_LIMITS == MODEL_TEXT_LIMITS
    assert set(MESSAGING_ACTIONS) == set(MODEL_TEXT_LIMITS) and len(MESSAGING_ACTIONS) == 5


@pytest.mark.parametrize("action", MESSAGING_ACTIONS)
def test_send_message_posts_only_the_text(amazon, make, action):
    url = f"{ACTIONS_URL}/messages/{action}"
    amazon.post(url, status=201, match=[matchers.query_param_matcher({"marketplaceIds": UK})])
    make().send_message(action, ORDER_ID, UK, TEXT)
    call = amazon.calls[0]
    assert call.request.method == "POST"
    assert path_of(call) == f"/messaging/v1/orders/{ORDER_ID}/messages/{action}"
    assert query_of(call) == {"marketplaceIds": [UK]}
    assert json.loads(call.request.body) == {"text": TEXT}


def test_send_message_accepts_an_empty_json_answer(amazon, make):
    amazon.post(f"{ACTIONS_URL}/messages/unexpectedProblem", status=201, json={})
    assert make().send_message("unexpectedProblem", ORDER_ID, UK, TEXT) is None


@pytest.mark.parametrize(
    ("action", "text", "limits"),
    [
        ("confirmCustomizationDetails", "x" * 801, (1, 800)),
        ("confirmDeliveryDetails", "x" * 2001, (1, 2000)),
        ("unexpectedProblem", "", (1, 2000)),
        ("confirmOrderDetails", "   ", (1, 2000)),
    ],
)
def test_send_message_checks_the_text_before_calling(amazon, make, action, text, limits):
    with pytest.raises(SpApiInvalidInput) as caught:
        make().send_message(action, ORDER_ID, UK, text)
    assert len(amazon.calls) == 0
    error = caught.value
    assert error.details == {"min": limits[0], "max": limits[1], "length": len(text)}
    assert str(limits[1]) in str(error)
    assert error.code == "spapi_invalid_input" and error.retryable is False


@pytest.mark.parametrize(("action", "length"), [("confirmCustomizationDetails", 800), ("confirmServiceDetails", 2000)])
def test_send_message_at_the_limit_is_sent(amazon, make, action, length):
    amazon.post(f"{ACTIONS_URL}/messages/{action}", status=201)
    make().send_message(action, ORDER_ID, UK, "é" * length)
    assert len(amazon.calls) == 1


def test_send_message_unknown_action_or_ids_refused_before_calling(amazon, make):
    client = make()
    with pytest.raises(SpApiInvalidInput, match="negativeFeedbackRemoval"):
        client.send_message("negativeFeedbackRemoval", ORDER_ID, UK, TEXT)
    with pytest.raises(SpApiInvalidInput):
        client.send_message("confirmOrderDetails", ORDER_ID, "", TEXT)
    with pytest.raises(SpApiInvalidInput):
        client.get_order("")
    with pytest.raises(SpApiInvalidInput):
        client.messaging_actions(" ", UK)
    assert len(amazon.calls) == 0


# --- Attachments (Uploads API, then S3, then the message) ---------------------------------------------


def calls_summary(calls: Any) -> list[tuple[str, str]]:
    return [(call.request.method, urlsplit(call.request.url).netloc) for call in calls]


def test_attachment_actions_match_the_model():
    assert set(MESSAGING_ATTACHMENT_ACTIONS) == MODEL_ATTACHMENT_ACTIONS
    assert MAX_MESSAGE_ATTACHMENTS == 5  # the model's limit on `attachments`


def test_message_attachment_repr_leaves_out_the_bytes():
    assert repr(PNG) == "MessageAttachment(filename='engraving-proof.png', content_type='image/png')"


def test_send_message_with_two_attachments_uploads_each_then_posts(amazon, make):
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(2, PDF))
    amazon.put(S3_URLS[1], status=200)
    amazon.put(S3_URLS[2], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)

    make(timeout=9).send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG, PDF])

    sp_api, s3 = "sellingpartnerapi-eu.amazon.com", "s3.eu-west-1.amazonaws.com"
    assert calls_summary(amazon.calls) == [
        ("POST", sp_api),
        ("PUT", s3),
        ("POST", sp_api),
        ("PUT", s3),
        ("POST", sp_api),
    ]
    create_1, put_1, create_2, put_2, message = amazon.calls
    for create, file in ((create_1, PNG), (create_2, PDF)):
        # The resource is the message's own path, slashes kept: a greedy path parameter.
        assert path_of(create) == (
            f"/uploads/2020-11-01/uploadDestinations/messaging/v1/orders/{ORDER_ID}/messages/confirmCustomizationDetails"
        )
        assert query_of(create) == {
            "marketplaceIds": [UK],
            "contentMD5": [md5_of(file.data)],
            "contentType": [file.content_type],
        }
        assert create.request.headers["x-amz-access-token"] == TOKEN
        assert not create.request.body
    assert query_of(create_1)["contentMD5"] == [base64.b64encode(hashlib.md5(PNG.data).digest()).decode()]
    for put, n, file in ((put_1, 1, PNG), (put_2, 2, PDF)):
        assert put.request.url == S3_URLS[n]
        assert put.request.body == file.data
        headers = put.request.headers
        assert headers["Content-MD5"] == md5_of(file.data)  # the returned (signed) headers, as they came
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["Content-Type"] == file.content_type
        assert "x-amz-access-token" not in headers  # our LWA token never goes to S3
        assert put.request.req_kwargs["timeout"] == 9
    assert path_of(message) == f"/messaging/v1/orders/{ORDER_ID}/messages/confirmCustomizationDetails"
    assert query_of(message) == {"marketplaceIds": [UK]}
    assert json.loads(message.request.body) == {
        "text": TEXT,
        "attachments": [
            {"uploadDestinationId": DESTINATION_IDS[1], "fileName": "engraving-proof.png"},
            {"uploadDestinationId": DESTINATION_IDS[2], "fileName": "Épreuve Smith.pdf"},
        ],
    }


def test_upload_uses_returned_headers_as_they_are(amazon, make):
    # Headers signed into the URL must go as Amazon gave them; ours only fill what they leave out.
    body = destination_body(1, PNG)
    body["payload"]["headers"] = {"content-type": "image/png; charset=binary", "x-amz-meta-kind": "proof"}
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=body)
    amazon.put(S3_URLS[1], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    headers = amazon.calls[1].request.headers
    assert headers["Content-Type"] == "image/png; charset=binary"
    assert headers["x-amz-meta-kind"] == "proof"
    assert headers["Content-MD5"] == md5_of(PNG.data)


@pytest.mark.parametrize("action", sorted(set(MESSAGING_ACTIONS) - MODEL_ATTACHMENT_ACTIONS))
def test_attachments_for_an_action_without_them_are_refused_before_calling(amazon, make, tokens, action):
    with pytest.raises(SpApiInvalidInput) as caught:
        make().send_message(action, ORDER_ID, UK, TEXT, attachments=[PNG])
    assert len(amazon.calls) == 0 and tokens.gets == 0
    assert action in str(caught.value) and "attachments" in str(caught.value)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("attachments", "match"),
    [
        ([PNG] * 6, "at most 5"),
        ([MessageAttachment("a.png", "image/png", b"")], "needs content"),
        ([PNG, MessageAttachment("  ", "image/png", b"x")], "attachment 2 needs a file name"),
        ([MessageAttachment("a.png", "", b"x")], "needs a content type"),
        (["a.png"], "not a MessageAttachment"),
    ],
)
def test_bad_attachments_are_refused_before_calling(amazon, make, attachments, match):
    with pytest.raises(SpApiInvalidInput, match=match):
        make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=attachments)
    assert len(amazon.calls) == 0


def test_upload_destination_429_then_success(amazon, make, sleeps):
    amazon.post(UPLOAD_DESTINATION_URL, status=429, json=THROTTLED)
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert [call.request.method for call in amazon.calls] == ["POST", "POST", "PUT", "POST"]
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= spapi.BACKOFF_BASE
    assert json.loads(amazon.calls[-1].request.body)["attachments"][0]["uploadDestinationId"] == DESTINATION_IDS[1]


def test_upload_destination_500_is_retried_it_creates_nothing_visible(amazon, make, sleeps):
    amazon.post(UPLOAD_DESTINATION_URL, status=500, json=SERVER_ERROR)
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert [call.request.method for call in amazon.calls] == ["POST", "POST", "PUT", "POST"]
    assert len(sleeps) == 1


def test_upload_destination_failing_sends_nothing(amazon, make):
    amazon.post(UPLOAD_DESTINATION_URL, status=503, json=errors("ServiceUnavailable", "Try later."))
    with pytest.raises(SpApiUnavailable) as caught:
        make(max_retries=1).send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert [call.request.method for call in amazon.calls] == ["POST", "POST"]  # both createUploadDestination…
    assert "createUploadDestinationForResource" in str(caught.value)
    assert "may have been sent" not in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"uploadDestinationId": DESTINATION_IDS[1]},
        {"url": S3_URLS[1], "headers": {}},
        {"uploadDestinationId": DESTINATION_IDS[1], "url": "not a url"},
    ],
)
def test_unusable_upload_destination_is_unavailable(amazon, make, payload):
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json={"payload": payload})
    with pytest.raises(SpApiUnavailable, match="unexpected answer") as caught:
        make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert len(amazon.calls) == 1
    assert S3_SIGNATURE[:-1] not in str(caught.value)


def assert_no_presigned_url(error: SpApiError, log_text: str) -> None:
    for text in (str(error), repr(error), str(error.args), str(error.details), log_text):
        assert "X-Amz-Signature" not in text and S3_SIGNATURE[:-1] not in text
        assert "AKIAW5VUA47ENEOYT7RC" not in text and "s3.eu-west-1.amazonaws.com" not in text
    # Nothing of a requests exception (whose text holds the URL) rides along with the error.
    assert error.__cause__ is None and error.__context__ is None


def test_upload_refused_by_s3_is_unavailable_and_the_message_is_not_sent(amazon, make, caplog, sleeps):
    caplog.set_level("DEBUG")
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=403, body=S3_ACCESS_DENIED, content_type="application/xml")
    message_url = f"{ACTIONS_URL}/messages/confirmCustomizationDetails"
    amazon.post(message_url, status=201)
    with pytest.raises(SpApiUnavailable) as caught:
        make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG, PDF])
    assert [call.request.method for call in amazon.calls] == ["POST", "PUT"]  # no retry of a 4xx, no message
    assert sleeps == []
    error = caught.value
    assert (
        str(error)
        == "attachmentUpload of 'engraving-proof.png' failed: HTTP 403 AccessDenied (the message was not sent)"
    )
    assert error.code == "spapi_unavailable" and error.retryable is True and error.status == 403
    assert_no_presigned_url(error, caplog.text)
    assert "attachmentUpload status=403" in caplog.text


def test_upload_network_failure_is_retried_then_unavailable(amazon, make, caplog, sleeps):
    caplog.set_level("DEBUG")
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    # requests' own text for such failures quotes the whole URL, signature included.
    amazon.put(S3_URLS[1], body=requests.exceptions.ConnectionError(f"Max retries exceeded with url: {S3_URLS[1]}"))
    with pytest.raises(SpApiUnavailable) as caught:
        make(max_retries=2).send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert [call.request.method for call in amazon.calls] == ["POST", "PUT", "PUT", "PUT"]
    assert len(sleeps) == 2
    assert str(caught.value) == (
        "attachmentUpload of 'engraving-proof.png' failed: upload host unreachable (the message was not sent)"
    )
    assert caught.value.status is None
    assert_no_presigned_url(caught.value, caplog.text)


def test_upload_timeout_says_so(amazon, make):
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], body=requests.exceptions.ReadTimeout(f"Read timed out: {S3_URLS[1]}"))
    with pytest.raises(SpApiUnavailable, match="no answer from the upload host within 4s") as caught:
        make(max_retries=0, timeout=4).send_message(
            "confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG]
        )
    assert_no_presigned_url(caught.value, "")


def test_upload_s3_500_then_success(amazon, make, sleeps):
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=503, body="<Error><Code>SlowDown</Code></Error>")
    amazon.put(S3_URLS[1], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert [call.request.method for call in amazon.calls] == ["POST", "PUT", "PUT", "POST"]
    assert len(sleeps) == 1


def test_upload_destination_has_its_own_bucket_and_rate(amazon, make):
    seen: list[tuple[str, str, float, int]] = []

    class Spy(Throttle):
        def acquire(self, seller_key: str, operation: str, *, rate: float, burst: int) -> float:
            seen.append((seller_key, operation, rate, burst))
            return 0.0

    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(2, PDF))
    amazon.put(S3_URLS[1], status=200)
    amazon.put(S3_URLS[2], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make(throttle=Spy()).send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG, PDF])
    # Uploads v2020-11-01's usage plan (10/s, burst 10); the S3 PUTs are not SP-API calls and take none.
    assert seen == [
        (SELLER, "createUploadDestinationForResource", 10.0, 10),
        (SELLER, "createUploadDestinationForResource", 10.0, 10),
        (SELLER, "confirmCustomizationDetails", 1.0, 5),
    ]


def test_upload_destination_expired_token_is_refreshed(amazon, make, tokens):
    amazon.post(UPLOAD_DESTINATION_URL, status=403, json=EXPIRED)
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=200)
    amazon.post(f"{ACTIONS_URL}/messages/confirmCustomizationDetails", status=201)
    make().send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])
    assert tokens.invalidated == 1
    assert amazon.calls[1].request.headers["x-amz-access-token"] == TOKEN_2
    assert "x-amz-access-token" not in amazon.calls[2].request.headers


# --- The operations table -----------------------------------------------------------------------------


def _row_for(call: Any) -> str | None:
    method, path, query = call.request.method, path_of(call), query_of(call)
    for name, row_method, template, required in OPERATIONS_TABLE:
        pattern = "^" + re.escape(template) + "$"
        for parameter in re.findall(r"\{([^}]+)\}", template):
            segment = ".+" if parameter in GREEDY_PARAMETERS else "[^/]+"
            pattern = pattern.replace(re.escape("{" + parameter + "}"), segment)
        if method == row_method and re.match(pattern, path) and all(query.get(q) for q in required):
            return name
    return None


def test_every_request_matches_a_model_operation(amazon, make):
    amazon.get(ORDER_URL, json=order_body())
    amazon.get(ACTIONS_URL, json=actions_body())
    for action in MESSAGING_ACTIONS:
        amazon.post(f"{ACTIONS_URL}/messages/{action}", status=201)
    amazon.post(UPLOAD_DESTINATION_URL, status=201, json=destination_body(1, PNG))
    amazon.put(S3_URLS[1], status=200)
    client = make()
    client.get_order(ORDER_ID)
    client.messaging_actions(ORDER_ID, UK)
    for action in MESSAGING_ACTIONS:
        client.send_message(action, ORDER_ID, UK, TEXT)
    client.send_message("confirmCustomizationDetails", ORDER_ID, UK, TEXT, attachments=[PNG])

    # The attachment's bytes go to S3, outside the SP-API: the one call that is no model operation.
    (s3_call,) = [call for call in amazon.calls if not call.request.url.startswith(EU_HOST)]
    assert s3_call.request.method == "PUT" and "x-amz-access-token" not in s3_call.request.headers
    used = set()
    for call in amazon.calls:
        if call is s3_call:
            continue
        name = _row_for(call)
        assert name is not None, f"{call.request.method} {call.request.url} matches no operation of the models"
        assert call.request.headers.get("x-amz-access-token")
        if "/messaging/" in call.request.url or "/uploads/" in call.request.url:
            assert len(query_of(call)["marketplaceIds"]) == 1  # the models' maxItems: 1
        used.add(name)
    assert used == {row[0] for row in OPERATIONS_TABLE}
    # The client's own table agrees with the hand-made one.
    assert {(op.name, op.method, op.path) for op in spapi.OPERATIONS.values()} == {
        (name, method, path) for name, method, path, _ in OPERATIONS_TABLE
    }


# --- 429 and backoff ----------------------------------------------------------------------------------


def test_429_then_success_sleeps_a_jittered_backoff(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=429, json=THROTTLED)
    amazon.get(ORDER_URL, json=order_body())
    order = make().get_order(ORDER_ID)
    assert order.order_id == ORDER_ID
    assert len(amazon.calls) == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= spapi.BACKOFF_BASE


def test_429_backoff_ceilings_double_with_full_jitter(amazon, make, sleeps, monkeypatch):
    ceilings: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        ceilings.append((low, high))
        return high / 2

    monkeypatch.setattr(http_retry.random, "uniform", uniform)
    for _ in range(5):
        amazon.get(ORDER_URL, status=429, json=THROTTLED)
    with pytest.raises(SpApiThrottled):
        make(max_retries=5).get_order(ORDER_ID)
    assert ceilings == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 8.0), (0, 8.0)]  # capped at 8 s
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_429_until_the_budget_is_spent(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=429, json=THROTTLED)
    with pytest.raises(SpApiThrottled) as caught:
        make(max_retries=3).get_order(ORDER_ID)
    assert len(amazon.calls) == 4  # the first try and max_retries retries
    assert len(sleeps) == 3
    error = caught.value
    assert error.code == "spapi_throttled" and error.retryable is True and error.status == 429
    assert error.amazon_code == "QuotaExceeded"


def test_429_honours_retry_after(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=429, json=THROTTLED, headers={"Retry-After": "2"})
    amazon.get(ORDER_URL, json=order_body())
    make().get_order(ORDER_ID)
    assert sleeps == [2.0]


def test_429_with_a_long_retry_after_gives_up_at_once(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=429, json=THROTTLED, headers={"Retry-After": "60"})
    with pytest.raises(SpApiThrottled) as caught:
        make().get_order(ORDER_ID)
    assert len(amazon.calls) == 1 and sleeps == []
    assert caught.value.retry_after == 60.0


def test_no_retries_when_max_retries_is_zero(amazon, make):
    amazon.get(ORDER_URL, status=429, json=THROTTLED)
    with pytest.raises(SpApiThrottled):
        make(max_retries=0).get_order(ORDER_ID)
    assert len(amazon.calls) == 1


# --- Tokens and 403 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, EXPIRED),
        (403, errors("Unauthorized", "The access token you provided is revoked, malformed or invalid.")),
        (403, errors("InvalidAccessToken", "Access denied.")),
        (401, {}),
    ],
)
def test_expired_token_is_refreshed_once(amazon, make, tokens, status, body):
    amazon.get(ORDER_URL, status=status, json=body)
    amazon.get(ORDER_URL, json=order_body())
    order = make().get_order(ORDER_ID)
    assert order.order_id == ORDER_ID
    assert tokens.invalidated == 1
    assert [c.request.headers["x-amz-access-token"] for c in amazon.calls] == [TOKEN, TOKEN_2]


def test_second_expiry_is_forbidden(amazon, make, tokens):
    amazon.get(ORDER_URL, status=403, json=EXPIRED)
    with pytest.raises(SpApiForbidden) as caught:
        make().get_order(ORDER_ID)
    assert len(amazon.calls) == 2 and tokens.invalidated == 1
    error = caught.value
    assert error.code == "spapi_forbidden" and error.retryable is False and error.status == 403
    assert "token refresh" in str(error)


def test_role_missing_is_forbidden_without_retry(amazon, make, tokens, sleeps):
    amazon.get(ORDER_URL, status=403, json=ROLE_MISSING)
    with pytest.raises(SpApiForbidden) as caught:
        make().get_order(ORDER_ID)
    assert len(amazon.calls) == 1 and tokens.invalidated == 0 and sleeps == []
    assert "Access to requested resource is denied." in str(caught.value)
    assert caught.value.amazon_code == "Unauthorized"


def test_token_source_errors_pass_through(amazon, make):
    class Broken(FakeTokens):
        def get(self) -> str:
            raise RuntimeError("secret store down")

    with pytest.raises(RuntimeError, match="secret store down"):
        make(tokens=Broken()).get_order(ORDER_ID)
    assert len(amazon.calls) == 0


# --- Other errors -------------------------------------------------------------------------------------


def test_404_is_not_found(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=404, json=errors("NotFound", "Order not found.", ORDER_ID))
    with pytest.raises(SpApiNotFound) as caught:
        make().get_order(ORDER_ID)
    error = caught.value
    assert len(amazon.calls) == 1 and sleeps == []
    assert error.code == "spapi_not_found" and error.retryable is True and error.status == 404
    assert str(error) == f"getOrder: HTTP 404 NotFound: Order not found. ({ORDER_ID})"


@pytest.mark.parametrize("status", [400, 422])
def test_invalid_input_is_not_retried(amazon, make, status):
    amazon.post(
        f"{ACTIONS_URL}/messages/confirmOrderDetails", status=status, json=errors("InvalidInput", "Invalid Input")
    )
    with pytest.raises(SpApiInvalidInput) as caught:
        make().send_message("confirmOrderDetails", ORDER_ID, UK, TEXT)
    assert len(amazon.calls) == 1
    assert caught.value.code == "spapi_invalid_input" and caught.value.retryable is False
    assert "Invalid Input" in str(caught.value)


def test_500_on_get_is_retried_then_unavailable(amazon, make, sleeps):
    amazon.get(ORDER_URL, status=500, json=SERVER_ERROR)
    with pytest.raises(SpApiUnavailable) as caught:
        make(max_retries=2).get_order(ORDER_ID)
    assert len(amazon.calls) == 3 and len(sleeps) == 2
    error = caught.value
    assert error.code == "spapi_unavailable" and error.retryable is True and error.status == 500
    assert "InternalFailure" in str(error)


def test_503_on_get_then_success(amazon, make, sleeps):
    amazon.get(ACTIONS_URL, status=503, json=errors("ServiceUnavailable", "Service temporarily unavailable."))
    amazon.get(ACTIONS_URL, json=actions_body())
    assert len(make().messaging_actions(ORDER_ID, UK)) == 8
    assert len(amazon.calls) == 2 and len(sleeps) == 1


def test_500_on_post_is_not_retried(amazon, make, sleeps):
    amazon.post(f"{ACTIONS_URL}/messages/confirmDeliveryDetails", status=500, json=SERVER_ERROR)
    with pytest.raises(SpApiUnavailable) as caught:
        make().send_message("confirmDeliveryDetails", ORDER_ID, UK, TEXT)
    assert len(amazon.calls) == 1 and sleeps == []
    assert "may have been sent" in str(caught.value)


def test_timeout_on_get_is_retried_then_unavailable(amazon, make, sleeps):
    amazon.get(ORDER_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(SpApiUnavailable) as caught:
        make(max_retries=2, timeout=3).get_order(ORDER_ID)
    assert len(amazon.calls) == 3 and len(sleeps) == 2
    assert str(caught.value) == "getOrder: no answer within 3s"
    assert caught.value.status is None


def test_connection_error_then_success(amazon, make):
    amazon.get(ORDER_URL, body=requests.exceptions.ConnectionError("connection refused"))
    amazon.get(ORDER_URL, json=order_body())
    assert make().get_order(ORDER_ID).order_id == ORDER_ID


def test_timeout_on_post_is_not_retried(amazon, make, sleeps):
    amazon.post(f"{ACTIONS_URL}/messages/confirmDeliveryDetails", body=requests.exceptions.ReadTimeout("read"))
    with pytest.raises(SpApiUnavailable, match="may have been sent"):
        make().send_message("confirmDeliveryDetails", ORDER_ID, UK, TEXT)
    assert len(amazon.calls) == 1 and sleeps == []


def refused(url: str) -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens: its ConnectionError around urllib3's retry error, whose
    reason is the NewConnectionError of the refused connect (the same chain as a real refusal below)."""
    host = urlsplit(url).hostname or ""
    reason = NewConnectionError(
        HTTPSConnection(host, 443), "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    return requests.exceptions.ConnectionError(MaxRetryError(HTTPSConnectionPool(host, 443), url, reason))


def test_a_message_post_that_never_reached_amazon_is_sent_again(amazon, make, sleeps):
    url = f"{ACTIONS_URL}/messages/confirmDeliveryDetails"
    amazon.post(url, body=refused(url))
    amazon.post(url, body=requests.exceptions.ConnectTimeout("connect timed out"))
    amazon.post(url, status=201, body="")
    make().send_message("confirmDeliveryDetails", ORDER_ID, UK, TEXT)
    assert len(amazon.calls) == 3 and len(sleeps) == 2


def test_a_message_post_with_nothing_listening_ends_not_sent_after_the_retries(make, sleeps):
    """A real refusal (a loopback port nobody listens on), not a built exception."""
    client = make(endpoint=f"http://127.0.0.1:{free_port()}", max_retries=2, timeout=3)
    with pytest.raises(SpApiNotSent) as caught:
        client.send_message("confirmDeliveryDetails", ORDER_ID, UK, TEXT)
    assert len(sleeps) == 2
    error = caught.value
    assert isinstance(error, SpApiUnavailable) and error.code == "spapi_unavailable" and error.retryable
    assert str(error) == (
        "createConfirmDeliveryDetails: SP-API endpoint unreachable (the message was not sent: no connection to Amazon)"
    )


def test_a_connection_lost_after_the_post_was_written_is_not_retried(amazon, make, sleeps):
    url = f"{ACTIONS_URL}/messages/confirmDeliveryDetails"
    lost = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    amazon.post(url, body=requests.exceptions.ConnectionError(lost))
    with pytest.raises(SpApiUnavailable, match="may have been sent") as caught:
        make().send_message("confirmDeliveryDetails", ORDER_ID, UK, TEXT)
    assert not isinstance(caught.value, SpApiNotSent)
    assert len(amazon.calls) == 1 and sleeps == []


@pytest.mark.parametrize("body", ["<html>Service Unavailable</html>", "[]", '{"order": "202-1234567-8901234"}', "{}"])
def test_unusable_order_answer_is_unavailable(amazon, make, body):
    amazon.get(ORDER_URL, body=body, content_type="application/json")
    with pytest.raises(SpApiUnavailable, match="unexpected answer"):
        make().get_order(ORDER_ID)
    assert len(amazon.calls) == 1  # a bad 200 is not retried: it would likely be the same


@pytest.mark.parametrize("body", ["not json", '{"_links": {"actions": "confirmDeliveryDetails"}}', '"x"'])
def test_unusable_actions_answer_is_unavailable(amazon, make, body):
    amazon.get(ACTIONS_URL, body=body, content_type="application/hal+json")
    with pytest.raises(SpApiUnavailable, match="unexpected answer"):
        make().messaging_actions(ORDER_ID, UK)


def test_error_without_a_json_body(amazon, make):
    amazon.get(ORDER_URL, status=404, body="Not Found", content_type="text/plain")
    with pytest.raises(SpApiNotFound, match=r"^getOrder: HTTP 404$"):
        make().get_order(ORDER_ID)


def test_errors_are_one_family():
    for cls in (SpApiThrottled, SpApiNotFound, SpApiForbidden, SpApiInvalidInput, SpApiUnavailable):
        assert issubclass(cls, SpApiError)
    assert {cls.code: cls.retryable for cls in SpApiError.__subclasses__()} == {
        "spapi_throttled": True,
        "spapi_not_found": True,
        "spapi_forbidden": False,
        "spapi_invalid_input": False,
        "spapi_unavailable": True,
    }


# --- The token never leaks ----------------------------------------------------------------------------


def test_token_never_in_errors_or_logs(make, caplog):
    caplog.set_level("DEBUG", logger="marketplaces.spapi")
    echo = errors("Unauthorized", f"Access denied for token {TOKEN}.", f"x-amz-access-token: {TOKEN}")
    scenarios = [
        (403, echo),
        (404, errors("NotFound", f"No order; you sent {TOKEN}")),
        (400, errors("InvalidInput", "bad", f"header was {TOKEN}")),
        (500, errors("InternalFailure", f"{TOKEN}")),
        (429, errors("QuotaExceeded", f"{TOKEN}")),
    ]
    raised: list[SpApiError] = []
    for status, body in scenarios:
        with responses.RequestsMock() as amazon, pytest.raises(SpApiError) as caught:
            amazon.get(ORDER_URL, status=status, json=body)
            make(max_retries=1, tokens=FakeTokens()).get_order(ORDER_ID)
        raised.append(caught.value)
    with responses.RequestsMock() as amazon, pytest.raises(SpApiError) as caught:
        amazon.post(f"{ACTIONS_URL}/messages/confirmOrderDetails", status=503, json=errors("x", TOKEN))
        make(tokens=FakeTokens()).send_message("confirmOrderDetails", ORDER_ID, UK, TEXT)
    raised.append(caught.value)
    assert len(raised) == len(scenarios) + 1
    for error in raised:
        for text in (str(error), repr(error), str(error.args), str(error.details)):
            assert TOKEN not in text and TOKEN_2 not in text
            assert "IwEBISpApiTestAccessToken" not in text
    assert TOKEN not in caplog.text and TOKEN_2 not in caplog.text
    assert "getOrder" in caplog.text and SELLER in caplog.text


def test_each_call_is_logged_with_operation_status_duration_seller(amazon, make, caplog):
    caplog.set_level("INFO", logger="marketplaces.spapi")
    amazon.get(ORDER_URL, json=order_body(), headers={"x-amzn-RequestId": "req-123"})
    make().get_order(ORDER_ID)
    (record,) = [r for r in caplog.records if r.name == "marketplaces.spapi"]
    message = record.getMessage()
    assert "getOrder" in message and "status=200" in message and f"seller={SELLER}" in message
    assert "duration=" in message and "request_id=req-123" in message


# --- Throttle -----------------------------------------------------------------------------------------


def test_throttle_burst_then_waits():
    clock = Clock()
    throttle = Throttle(clock=clock, max_wait=10)
    waits = [throttle.acquire(SELLER, "getMessagingActionsForOrder", rate=1, burst=5) for _ in range(7)]
    assert waits == [0, 0, 0, 0, 0, 1.0, 2.0]  # the 6th and 7th queue one after the other
    clock.now += 10  # the bucket refills, never beyond its burst
    assert [throttle.acquire(SELLER, "getMessagingActionsForOrder", rate=1, burst=5) for _ in range(6)] == [
        0,
        0,
        0,
        0,
        0,
        1.0,
    ]


def test_throttle_is_per_seller_and_per_operation():
    clock = Clock()
    throttle = Throttle(clock=clock)
    assert throttle.acquire(SELLER, "getOrder", rate=0.5, burst=1) == 0
    assert throttle.acquire(SELLER, "getOrder", rate=0.5, burst=1) == 2.0
    assert throttle.acquire("A2OTHERSELLER", "getOrder", rate=0.5, burst=1) == 0
    assert throttle.acquire(SELLER, "createConfirmOrderDetails", rate=1, burst=1) == 0


def test_throttle_refuses_a_wait_beyond_max_wait():
    clock = Clock()
    throttle = Throttle(clock=clock, max_wait=5)
    assert [throttle.acquire(SELLER, "getOrder", rate=0.5, burst=1) for _ in range(3)] == [0, 2.0, 4.0]
    with pytest.raises(SpApiThrottled) as caught:
        throttle.acquire(SELLER, "getOrder", rate=0.5, burst=1)
    assert caught.value.retryable is True and caught.value.retry_after == 6.0
    clock.now += 6  # the refused call reserved nothing: the queue drained, one token is back
    assert throttle.acquire(SELLER, "getOrder", rate=0.5, burst=1) == 0


def test_throttle_is_thread_safe():
    throttle = Throttle(clock=Clock(), max_wait=100)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = throttle.acquire(SELLER, "getOrder", rate=1, burst=5)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [0.0] * 5 + [float(n) for n in range(1, 36)]


def test_client_sleeps_what_the_throttle_says(amazon, make, sleeps):
    clock = Clock()
    throttle = Throttle(clock=clock, max_wait=5)
    amazon.get(ACTIONS_URL, json=actions_body())
    client = make(throttle=throttle)
    for _ in range(6):
        client.messaging_actions(ORDER_ID, UK)
    assert sleeps == [1.0]  # burst 5 at 1 request/s: the 6th call waits one second
    assert len(amazon.calls) == 6


def test_client_throttled_locally_makes_no_call(amazon, make):
    throttle = Throttle(clock=Clock(), max_wait=1)
    for _ in range(30):
        throttle.acquire(SELLER, "getOrder", rate=0.5, burst=30)
    with pytest.raises(SpApiThrottled):
        make(throttle=throttle).get_order(ORDER_ID)  # the next token is 2 s away, beyond max_wait
    assert len(amazon.calls) == 0


def test_client_uses_the_model_rates(amazon, make):
    seen: list[tuple[str, str, float, int]] = []

    class Spy(Throttle):
        def acquire(self, seller_key: str, operation: str, *, rate: float, burst: int) -> float:
            seen.append((seller_key, operation, rate, burst))
            return 0.0

    amazon.get(ORDER_URL, json=order_body())
    amazon.get(ACTIONS_URL, json=actions_body())
    amazon.post(f"{ACTIONS_URL}/messages/unexpectedProblem", status=201)
    client = make(throttle=Spy())
    client.get_order(ORDER_ID)
    client.messaging_actions(ORDER_ID, UK)
    client.send_message("unexpectedProblem", ORDER_ID, UK, TEXT)
    assert seen == [
        (SELLER, "getOrder", 0.5, 30),
        (SELLER, "getMessagingActionsForOrder", 1.0, 5),
        (SELLER, "createUnexpectedProblem", 1.0, 5),
    ]
