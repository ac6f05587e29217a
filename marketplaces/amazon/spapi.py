"""The Selling Partner API (SP-API) client: the order behind a buyer's message, and the buyer-messaging
actions. All of KeyBuzz's SP-API calls go through this module.

Why plain `requests` and not python-amazon-sp-api: that library's authorization-code exchange leaves
out `redirect_uri` (our LWA client, `marketplaces.amazon.lwa`, sends it), and it does not retry 429
answers by default. KeyBuzz needs 8 operations, a throttle keyed by seller and one narrow error family
its callers can act on; a small client over one `requests.Session` gives exactly that.

Operations (the models' operationIds; paths relative to the regional host):
- Orders v2026-01-01 `getOrder`: `GET /orders/2026-01-01/orders/{orderId}?includedData=FULFILLMENT,PACKAGES`.
  Order items always come back; FULFILLMENT adds the order's status, fulfilment channel and ship/deliver
  windows, PACKAGES the carriers and tracking numbers (merchant-fulfilled orders only). The answer is
  `{"order": {...}}`, without the `payload` wrapper of the older APIs.
- Messaging v1 `getMessagingActionsForOrder`: `GET /messaging/v1/orders/{amazonOrderId}?marketplaceIds=…`,
  a HAL document whose `_links.actions` lists what may be sent for the order.
- Messaging v1 `createConfirmDeliveryDetails`, `createConfirmOrderDetails`, `createUnexpectedProblem`,
  `confirmCustomizationDetails`, `createConfirmServiceDetails`:
  `POST /messaging/v1/orders/{amazonOrderId}/messages/<action>?marketplaceIds=…` with `{"text": …}`; 201.
  confirmCustomizationDetails also takes `"attachments": [{"uploadDestinationId", "fileName"}]` (at most 5;
  the only one of the five whose request has attachments).
- Uploads v2020-11-01 `createUploadDestinationForResource`:
  `POST /uploads/2020-11-01/uploadDestinations/{resource}?marketplaceIds=…&contentMD5=…&contentType=…`,
  no body; 201 `{"payload": {"uploadDestinationId", "url", "headers": {…}}}`. `resource` is a greedy path
  parameter: the Messaging path the file is for, without its leading slash and with its slashes kept
  (`messaging/v1/orders/{amazonOrderId}/messages/confirmCustomizationDetails`). `contentMD5` is the base64
  of the file's MD5 digest. The file's bytes are then PUT to `url`, a pre-signed S3 URL on another host,
  with the returned `headers` and no SP-API token. That URL is a credential until it expires: it never
  goes into an error message or a log line.
Every Messaging and Uploads call needs exactly one `marketplaceIds` value.

Authentication is the LWA access token in `x-amz-access-token` (AWS SigV4 signing is no longer needed
since October 2023). Errors are `{"errors": [{"code", "message", "details"}]}`.

Which error for what (`code`, `retryable`):
- SpApiThrottled (`spapi_throttled`, yes): 429 after `max_retries` retries, or our own throttle would
  have to wait longer than its `max_wait`.
- SpApiNotFound (`spapi_not_found`, yes): 404. A buyer may write about an order before the seller's
  order data shows it, so "not found" is worth asking again later.
- SpApiForbidden (`spapi_forbidden`, no): 403 for a missing role, or a token still refused after one
  refresh. Only a new consent (with the role) helps.
- SpApiInvalidInput (`spapi_invalid_input`, no): 400/413/415/422, an unknown messaging action, a text
  outside the action's limits (checked before any call; `details` gives min, max and length), attachments
  for an action that takes none, or more than 5, or an empty one (also checked before any call).
- SpApiUnavailable (`spapi_unavailable`, yes): 5xx, timeouts, connection failures, an unusable 2xx body,
  an attachment upload to S3 that failed (any status but 2xx; the message is then not sent).
  SpApiNotSent, one of them: a message POST for which no connection to Amazon could be made.
GETs (and createUploadDestinationForResource, which creates nothing a buyer sees) are retried on 5xx and
network failures; message POSTs are not (Amazon may have sent the message before failing to answer, and
a buyer must not get it twice), unless no connection to Amazon was ever made (refused, unresolvable,
no answer to the connection attempt): then nothing was sent, and they are retried like a GET. A failed
attachment upload to S3 is SpApiUnavailable, raised before the message is sent.

`str()` of every error is safe to log and to store: Amazon's text is cleaned of the access token
(exact match, and anything token-shaped).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

import keybuzz
from keybuzz.http_retry import full_jitter, retry_after_seconds
from keybuzz.logging import redact
from marketplaces.amazon.regions import EU, FE, NA, normalize_region

logger = logging.getLogger("marketplaces.spapi")

VERSION = str(getattr(keybuzz, "__version__", "0"))
USER_AGENT = f"KeyBuzz/{VERSION} (Language=Python)"

HOSTS = {
    NA: "https://sellingpartnerapi-na.amazon.com",
    EU: "https://sellingpartnerapi-eu.amazon.com",
    FE: "https://sellingpartnerapi-fe.amazon.com",
}

# Full-jitter backoff between retries: sleep uniform(0, min(cap, base * 2**n)) before retry n (0-based).
BACKOFF_BASE = 1.0
BACKOFF_CAP = 8.0
# Amazon's text in our messages is cut here: enough to act on, short enough for a log line.
MAX_ERROR_TEXT = 300
# includedData for getOrder: what a ticket needs (status, channel, windows, tracking). BUYER and
# RECIPIENT are left out on purpose: they need the restricted PII roles and KeyBuzz does not show them.
ORDER_INCLUDED_DATA = ("FULFILLMENT", "PACKAGES")
FULFILLMENT_CHANNELS = ("AMAZON", "MERCHANT")
# Appended when a message POST fails without a clear refusal: Amazon may have sent it all the same.
MAYBE_SENT = " (the message may have been sent: check before sending it again)"
NOT_SENT = " (the message was not sent: no connection to Amazon)"


# --- Errors ---------------------------------------------------------------------------------------


class SpApiError(Exception):
    """An SP-API call failed. `str()` is safe to log; `code` is for machines; `retryable` says whether
    the same call later may work. `amazon_code` is Amazon's own error code when it sent one."""

    code = "spapi_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        amazon_code: str = "",
        request_id: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.amazon_code = amazon_code
        self.request_id = request_id
        self.details: dict[str, Any] = dict(details or {})


class SpApiThrottled(SpApiError):
    """Too many requests (429 after the retries, or our own throttle's wait is too long).
    `retry_after` is a hint in seconds when one is known."""

    code = "spapi_throttled"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class SpApiNotFound(SpApiError):
    """404: Amazon does not know the order (yet: new orders take a while to show up)."""

    code = "spapi_not_found"
    retryable = True


class SpApiForbidden(SpApiError):
    """403: the app lacks the role for this operation, or the token is refused even after a refresh."""

    code = "spapi_forbidden"
    retryable = False


class SpApiInvalidInput(SpApiError):
    """The request itself is wrong (Amazon's 400/422, or our own checks before calling)."""

    code = "spapi_invalid_input"
    retryable = False


class SpApiUnavailable(SpApiError):
    """Amazon could not answer usefully: 5xx, timeout, connection failure, or a body we cannot read."""

    code = "spapi_unavailable"
    retryable = True


class SpApiNotSent(SpApiUnavailable):
    """No connection to Amazon could be made (refused, unresolvable, no answer to the connection
    attempt), after the retries: the request never left, so a message may be sent again later."""


# --- Operations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One SP-API operation as its model describes it. `rate` (requests/s) and `burst` are the default
    usage plan from the operation's description; Amazon may grant a seller more, never less."""

    name: str  # the model's operationId
    method: str
    path: str  # template, `{param}` placeholders
    rate: float
    burst: int
    # The Messaging model produces HAL (`application/hal+json`); Orders plain JSON. Both parse as JSON.
    accept: str = "application/json"
    # A path parameter the model marks `x-amazon-spds-greedy-path-parameter`: its value is a path of its
    # own, slashes kept, given to `_call` already encoded (see `_expand_path`).
    greedy: str = ""
    # Retried on 5xx and network failures like a GET although it is not one: only for operations whose
    # repetition has no effect anyone sees.
    safe_to_retry: bool = False


HAL = "application/hal+json, application/json"

GET_ORDER = Operation("getOrder", "GET", "/orders/2026-01-01/orders/{orderId}", rate=0.5, burst=30)
GET_MESSAGING_ACTIONS = Operation(
    "getMessagingActionsForOrder", "GET", "/messaging/v1/orders/{amazonOrderId}", rate=1.0, burst=5, accept=HAL
)


def _message_operation(operation_id: str, action: str) -> Operation:
    path = f"/messaging/v1/orders/{{amazonOrderId}}/messages/{action}"
    return Operation(operation_id, "POST", path, rate=1.0, burst=5, accept=HAL)


# KeyBuzz's name for an action (used in its URLs) is the path segment, which is also the `name` Amazon
# gives the action in getMessagingActionsForOrder's `_links.actions`. The operationIds differ (most
# start with "create"), hence this map.
MESSAGING_OPERATIONS: dict[str, Operation] = {
    "confirmDeliveryDetails": _message_operation("createConfirmDeliveryDetails", "confirmDeliveryDetails"),
    "confirmOrderDetails": _message_operation("createConfirmOrderDetails", "confirmOrderDetails"),
    "unexpectedProblem": _message_operation("createUnexpectedProblem", "unexpectedProblem"),
    "confirmCustomizationDetails": _message_operation("confirmCustomizationDetails", "confirmCustomizationDetails"),
    "confirmServiceDetails": _message_operation("createConfirmServiceDetails", "confirmServiceDetails"),
}

MESSAGING_ACTIONS: tuple[str, ...] = tuple(MESSAGING_OPERATIONS)

# minLength/maxLength of each request's `text` in the Messaging model. Customization details allow
# 800 characters only; the others 2,000.
MESSAGING_TEXT_LIMITS: dict[str, tuple[int, int]] = {
    "confirmDeliveryDetails": (1, 2000),
    "confirmOrderDetails": (1, 2000),
    "unexpectedProblem": (1, 2000),
    "confirmCustomizationDetails": (1, 800),
    "confirmServiceDetails": (1, 2000),
}

# The actions whose request model has `attachments` (among KeyBuzz's five, only the customization
# details one: CreateConfirmCustomizationDetailsRequest), and the model's limit on their number.
MESSAGING_ATTACHMENT_ACTIONS: frozenset[str] = frozenset({"confirmCustomizationDetails"})
MAX_MESSAGE_ATTACHMENTS = 5

# Uploads v2020-11-01. Usage plan: 10 requests/s, burst 10 (the current model and API reference; models
# before 2023 said 0.1/s, burst 5). It is a POST, but all it makes is an upload slot nobody sees until a
# message names it (an unused one simply expires), so retrying it on 5xx or a network failure is safe.
CREATE_UPLOAD_DESTINATION = Operation(
    "createUploadDestinationForResource",
    "POST",
    "/uploads/2020-11-01/uploadDestinations/{resource}",
    rate=10.0,
    burst=10,
    greedy="resource",
    safe_to_retry=True,
)

OPERATIONS: dict[str, Operation] = {
    op.name: op for op in (GET_ORDER, GET_MESSAGING_ACTIONS, *MESSAGING_OPERATIONS.values(), CREATE_UPLOAD_DESTINATION)
}

# Our name for the PUT of an attachment's bytes to the upload destination (S3, not an SP-API operation):
# used in log lines and error messages.
ATTACHMENT_UPLOAD = "attachmentUpload"


# --- Results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderItem:
    asin: str
    sku: str
    title: str
    quantity: int
    price: str  # the unit price, Amazon's decimal string ("29.99"), "" when absent
    currency: str


@dataclass(frozen=True)
class OrderPackage:
    carrier: str
    tracking_number: str
    status: str


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str  # fulfillment.fulfillmentStatus: v2026-01-01 has no separate order status
    purchase_date: str  # ISO 8601 as Amazon sends them, "" when absent
    latest_ship_date: str
    latest_delivery_date: str
    marketplace_id: str
    fulfillment_channel: str  # "AMAZON" | "MERCHANT" | ""
    items: tuple[OrderItem, ...] = ()
    packages: tuple[OrderPackage, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, with the camelCase keys the ticket's order context is stored under."""
        return {
            "orderId": self.order_id,
            "status": self.status,
            "purchaseDate": self.purchase_date,
            "latestShipDate": self.latest_ship_date,
            "latestDeliveryDate": self.latest_delivery_date,
            "marketplaceId": self.marketplace_id,
            "fulfillmentChannel": self.fulfillment_channel,
            "items": [
                {
                    "asin": item.asin,
                    "sku": item.sku,
                    "title": item.title,
                    "quantity": item.quantity,
                    "price": item.price,
                    "currency": item.currency,
                }
                for item in self.items
            ],
            "packages": [
                {"carrier": package.carrier, "trackingNumber": package.tracking_number, "status": package.status}
                for package in self.packages
            ],
        }


@dataclass(frozen=True)
class MessageAttachment:
    """A file to send with a message (MESSAGING_ATTACHMENT_ACTIONS only). `filename` is the name the buyer
    sees, extension included; `content_type` its MIME type (e.g. "image/png")."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class MessagingAction:
    """One entry of `_links.actions`. The model's link object has `href` and `name`, no title."""

    name: str  # e.g. "confirmDeliveryDetails"; also Amazon lists "attributes", "warranty", …
    href: str = ""


# --- Throttle -------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class Throttle:
    """Token buckets per (seller, operation), in this process, shared by threads.

    A call takes a token; tokens come back at `rate` per second up to `burst`. When none is left the
    caller is told how long to wait and the token is reserved for it (the bucket goes negative), so
    callers that come next queue behind it instead of all waking at once. A wait above `max_wait`
    raises SpApiThrottled instead, reserving nothing: the caller does better to try again later."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_wait: float = 5.0) -> None:
        self.clock = clock
        self.max_wait = max_wait
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, seller_key: str, operation: str, *, rate: float, burst: int) -> float:
        rate = max(rate, 1e-6)
        capacity = float(max(burst, 1))
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get((seller_key, operation))
            if bucket is None:
                bucket = self._buckets[(seller_key, operation)] = _Bucket(tokens=capacity, stamp=now)
            bucket.tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            wait = (1.0 - bucket.tokens) / rate
            if wait > self.max_wait:
                raise SpApiThrottled(
                    f"{operation}: rate limit reached for this seller (next call possible in {wait:.1f}s)",
                    retry_after=wait,
                )
            bucket.tokens -= 1.0
            return wait


# One throttle per process unless a client is given its own: clients are cheap and made per
# connection, but the seller's rate limits are shared by all of them.
_default_throttle = Throttle()


# --- Client ---------------------------------------------------------------------------------------


class TokenSource(Protocol):
    def get(self) -> str:
        """A valid LWA access token."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token: the next get() refreshes it."""
        ...


@dataclass
class _Attempts:
    """What one logical call has used of its budgets."""

    throttled: int = 0  # 429 retries
    failed: int = 0  # 5xx / network retries (GET only)
    refreshed: bool = False  # the token was renewed once already
    tokens: list[str] = field(default_factory=list)  # every token sent, to scrub from messages


class SpApiClient:
    """One `requests.Session` per client: a timeout on every request, KeyBuzz's User-Agent, Amazon's
    throttling respected (our buckets first, then 429 with backoff), one token refresh when Amazon
    says the token expired."""

    def __init__(
        self,
        *,
        region: str,
        tokens: TokenSource,
        seller_key: str,
        endpoint: str = "",
        timeout: float = 15.0,
        max_retries: int = 3,
        throttle: Throttle | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.region = normalize_region(region)
        # endpoint: a sandbox host or the local fake; otherwise the region's production host.
        self.base_url = (endpoint or HOSTS[self.region]).rstrip("/")
        self.tokens = tokens
        self.seller_key = seller_key
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.throttle = throttle if throttle is not None else _default_throttle
        # None: time.sleep, looked up at each wait (so a test's patch of time.sleep applies to clients
        # that sync_orders and send_replies build themselves).
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def sleep(self, seconds: float) -> None:
        (self._sleep or time.sleep)(seconds)

    # Public operations --------------------------------------------------------------------------

    def get_order(self, order_id: str) -> Order:
        """The order with its items, fulfilment status and channel, and packages (FBM)."""
        _require("orderId", order_id)
        body = self._call(
            GET_ORDER,
            path_params={"orderId": order_id},
            params={"includedData": ",".join(ORDER_INCLUDED_DATA)},
        )
        order = body.get("order") if isinstance(body, dict) else None
        if not isinstance(order, dict):
            raise SpApiUnavailable("getOrder: unexpected answer from Amazon (no order object)", status=200)
        return _order_from(order)

    def messaging_actions(self, order_id: str, marketplace_id: str) -> list[MessagingAction]:
        """The message types Amazon allows for the order now (all of them, not only KeyBuzz's five)."""
        _require("amazonOrderId", order_id)
        _require("marketplaceIds", marketplace_id)
        body = self._call(
            GET_MESSAGING_ACTIONS,
            path_params={"amazonOrderId": order_id},
            params={"marketplaceIds": marketplace_id},
        )
        links = body.get("_links", {}) if isinstance(body, dict) else None
        actions = links.get("actions", []) if isinstance(links, dict) else None
        if not isinstance(actions, list):
            raise SpApiUnavailable(
                "getMessagingActionsForOrder: unexpected answer from Amazon (no _links.actions list)", status=200
            )
        found: list[MessagingAction] = []
        for link in actions:
            if not isinstance(link, dict):
                continue
            href = _text(link.get("href"))
            # `name` is optional in the link object; the action is then the last segment of its path.
            name = _text(link.get("name")) or urlsplit(href).path.rstrip("/").rpartition("/")[2]
            if name:
                found.append(MessagingAction(name=name, href=href))
        return found

    def send_message(
        self,
        action: str,
        order_id: str,
        marketplace_id: str,
        text: str,
        *,
        attachments: Sequence[MessageAttachment] = (),
    ) -> None:
        """Sends `text` to the buyer through one of MESSAGING_ACTIONS. Never retried on 5xx or a
        timeout: the message may have gone out (SpApiUnavailable then means "unknown", not "not sent").

        `attachments` (MESSAGING_ATTACHMENT_ACTIONS only, at most MAX_MESSAGE_ATTACHMENTS) are uploaded
        first, one by one: an upload destination from the Uploads API, then the bytes to it. A failed
        upload raises before the message is sent (SpApiUnavailable: nothing went to the buyer)."""
        operation = MESSAGING_OPERATIONS.get(action)
        if operation is None:
            raise SpApiInvalidInput(
                f"Unknown messaging action {action!r}: use one of {', '.join(MESSAGING_ACTIONS)}",
                details={"action": action, "allowed": list(MESSAGING_ACTIONS)},
            )
        _require("amazonOrderId", order_id)
        _require("marketplaceIds", marketplace_id)
        low, high = MESSAGING_TEXT_LIMITS[action]
        length = len(text)
        # A blank text passes a minLength of 1 but says nothing; Amazon would refuse it anyway.
        if length < low or length > high or not text.strip():
            raise SpApiInvalidInput(
                f"{action}: the text must be {low} to {high} characters and not blank (it has {length})",
                details={"min": low, "max": high, "length": length},
            )
        files = _check_attachments(action, attachments)
        body: dict[str, Any] = {"text": text}
        if files:
            # The upload destination is for the very path the message goes to, encoded as `_call` will.
            resource = _expand_path(operation.path, {"amazonOrderId": order_id}).lstrip("/")
            body["attachments"] = [
                {
                    "uploadDestinationId": self._upload_attachment(resource, marketplace_id, file),
                    "fileName": file.filename,
                }
                for file in files
            ]
        self._call(
            operation,
            path_params={"amazonOrderId": order_id},
            params={"marketplaceIds": marketplace_id},
            json_body=body,
        )

    # Attachments ----------------------------------------------------------------------------------

    def _upload_attachment(self, resource: str, marketplace_id: str, attachment: MessageAttachment) -> str:
        """Creates an upload destination for `resource`, PUTs the bytes there; the destination's id."""
        md5 = base64.b64encode(hashlib.md5(attachment.data, usedforsecurity=False).digest()).decode("ascii")
        body = self._call(
            CREATE_UPLOAD_DESTINATION,
            path_params={"resource": resource},
            params={"marketplaceIds": marketplace_id, "contentMD5": md5, "contentType": attachment.content_type},
        )
        payload = body.get("payload") if isinstance(body, dict) else None
        payload = payload if isinstance(payload, dict) else {}
        destination_id, url = _text(payload.get("uploadDestinationId")), _text(payload.get("url"))
        if not destination_id.strip() or urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise SpApiUnavailable(
                f"{CREATE_UPLOAD_DESTINATION.name}: unexpected answer from Amazon (no uploadDestinationId or url)",
                status=200,
            )
        headers = {str(k): str(v) for k, v in _dict(payload.get("headers")).items() if isinstance(v, str | int)}
        names = {name.lower() for name in headers}
        if "content-type" not in names:
            headers["Content-Type"] = attachment.content_type
        if "content-md5" not in names:
            headers["Content-MD5"] = md5
        self._put_attachment(url, headers, attachment)
        return destination_id

    def _put_attachment(self, url: str, headers: dict[str, str], attachment: MessageAttachment) -> None:
        """PUTs the bytes to the pre-signed `url`: only the destination's headers, never our token. A PUT
        of the same bytes to the same key is idempotent, so 5xx and network failures are retried.

        `url` is a credential (its query signs the upload): no message or log line carries it, nor any
        text of the answer but S3's error code, and a requests exception (whose text holds the URL) is
        neither chained nor kept as the error's context."""
        label = f"{ATTACHMENT_UPLOAD} of {attachment.filename!r}"
        failed = 0
        while True:
            started = time.monotonic()
            status: int | None = None
            reason = ""
            try:
                response = self.session.request(
                    "PUT", url, data=attachment.data, headers=headers, timeout=self.timeout, allow_redirects=False
                )
            except requests.exceptions.RequestException as exc:
                reason = _upload_network_reason(exc, self.timeout)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._log_upload(status, started)
                    return
                code = _s3_error_code(response, url)
                reason = f"HTTP {status}" + (f" {code}" if code else "")
            self._log_upload(status, started, reason)
            if (status is None or status >= 500) and failed < self.max_retries:
                self.sleep(_backoff(failed))
                failed += 1
                continue
            break
        # Raised outside the `except` block on purpose: nothing of the requests exception stays attached.
        raise SpApiUnavailable(
            f"{label} failed: {reason} (the message was not sent)",
            status=status,
            details={"filename": attachment.filename},
        )

    def _log_upload(self, status: int | None, started: float, reason: str = "") -> None:
        # Neither the URL nor its host: the operation, the outcome, the seller.
        logger.log(
            logging.INFO if status is not None and status < 300 else logging.WARNING,
            "SP-API %s status=%s duration=%.3fs seller=%s%s",
            ATTACHMENT_UPLOAD,
            status if status is not None else "-",
            time.monotonic() - started,
            self.seller_key,
            f" error={reason}" if reason else "",
        )

    # The request loop -----------------------------------------------------------------------------

    def _call(
        self,
        operation: Operation,
        *,
        path_params: dict[str, str],
        params: dict[str, str],
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """Sends the request until it succeeds or a budget runs out; returns the parsed JSON body (None
        for an empty 2xx body)."""
        url = self.base_url + _expand_path(operation.path, path_params, greedy=operation.greedy)
        idempotent = operation.method == "GET" or operation.safe_to_retry
        attempts = _Attempts()
        token = self.tokens.get()
        attempts.tokens.append(token)
        while True:
            wait = self.throttle.acquire(self.seller_key, operation.name, rate=operation.rate, burst=operation.burst)
            if wait > 0:
                self.sleep(wait)
            headers = {"x-amz-access-token": token, "Accept": operation.accept}
            if json_body is not None:
                headers["Content-Type"] = "application/json"
            started = time.monotonic()
            try:
                response = self.session.request(
                    operation.method, url, params=params, json=json_body, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.RequestException as exc:
                reason = _network_reason(exc, self.timeout)
                self._log(operation, None, started, reason)
                # A request that never left (no connection to Amazon) is safe to send again, a message too.
                safe = idempotent or _never_sent(exc)
                if safe and attempts.failed < self.max_retries:
                    self.sleep(_backoff(attempts.failed))
                    attempts.failed += 1
                    continue
                if idempotent:
                    raise SpApiUnavailable(f"{operation.name}: {reason}") from None
                if safe:
                    raise SpApiNotSent(f"{operation.name}: {reason}{NOT_SENT}") from None
                raise SpApiUnavailable(f"{operation.name}: {reason}{MAYBE_SENT}") from None

            status = response.status_code
            request_id = response.headers.get("x-amzn-RequestId", "")
            self._log(operation, status, started, request_id=request_id)
            if 200 <= status < 300:
                return _success_body(operation, response)

            amazon_code, text = _error_of(response, attempts.tokens)
            message = f"{operation.name}: HTTP {status}" + (f" {amazon_code}" if amazon_code else "")
            message += f": {text}" if text else ""
            known: dict[str, Any] = {"status": status, "amazon_code": amazon_code, "request_id": request_id}

            if status == 429:
                retry_after = retry_after_seconds(response)
                if retry_after is not None and retry_after > BACKOFF_CAP:
                    # Amazon asks for a longer pause than a worker should sit through: give the call back.
                    raise SpApiThrottled(message, retry_after=retry_after, **known)
                if attempts.throttled < self.max_retries:
                    self.sleep(retry_after if retry_after is not None else _backoff(attempts.throttled))
                    attempts.throttled += 1
                    continue
                raise SpApiThrottled(
                    f"{message} (after {attempts.throttled} retries)", retry_after=retry_after, **known
                )

            if status in (401, 403) and _token_trouble(status, amazon_code, text):
                if not attempts.refreshed:
                    # The cached token died early (or was revoked): one fresh token, one more try.
                    attempts.refreshed = True
                    self.tokens.invalidate()
                    token = self.tokens.get()
                    attempts.tokens.append(token)
                    continue
                raise SpApiForbidden(f"{message} (still refused after a token refresh)", **known)
            if status in (401, 403):
                raise SpApiForbidden(message, **known)
            if status == 404:
                raise SpApiNotFound(message, **known)
            if status in (400, 413, 415, 422):
                raise SpApiInvalidInput(message, **known)
            if status >= 500 or status == 408:
                if idempotent and attempts.failed < self.max_retries:
                    self.sleep(_backoff(attempts.failed))
                    attempts.failed += 1
                    continue
                raise SpApiUnavailable(message + ("" if idempotent else MAYBE_SENT), **known)
            raise SpApiError(message, **known)

    def _log(
        self, operation: Operation, status: int | None, started: float, reason: str = "", *, request_id: str = ""
    ) -> None:
        duration = time.monotonic() - started
        level = logging.INFO if status is not None and status < 400 else logging.WARNING
        logger.log(
            level,
            "SP-API %s status=%s duration=%.3fs seller=%s%s%s",
            operation.name,
            status if status is not None else "-",
            duration,
            self.seller_key,
            f" request_id={request_id}" if request_id else "",
            f" error={reason}" if reason else "",
        )


# --- Helpers --------------------------------------------------------------------------------------


def _require(name: str, value: str) -> None:
    # An empty id would change the path (…/orders/ is another operation): refuse it before calling.
    if not isinstance(value, str) or not value.strip():
        raise SpApiInvalidInput(f"{name} is required", details={"field": name})


def _expand_path(template: str, path_params: dict[str, str], *, greedy: str = "") -> str:
    """The template with each parameter percent-encoded as one path segment, except the greedy one: a
    path already encoded by the caller (built with this same function), put in as is, leading slash
    dropped (the template has its own)."""
    values = {k: v.lstrip("/") if k == greedy else quote(v, safe="") for k, v in path_params.items()}
    return template.format(**values)


def _check_attachments(action: str, attachments: Sequence[MessageAttachment]) -> list[MessageAttachment]:
    """Refuses, before any call, attachments the action does not take or Amazon would not accept."""
    files = list(attachments or ())
    if not files:
        return []
    if action not in MESSAGING_ATTACHMENT_ACTIONS:
        allowed = sorted(MESSAGING_ATTACHMENT_ACTIONS)
        raise SpApiInvalidInput(
            f"{action} does not take attachments (only {', '.join(allowed)} does)",
            details={"action": action, "attachment_actions": allowed},
        )
    if len(files) > MAX_MESSAGE_ATTACHMENTS:
        raise SpApiInvalidInput(
            f"{action}: at most {MAX_MESSAGE_ATTACHMENTS} attachments (it has {len(files)})",
            details={"max": MAX_MESSAGE_ATTACHMENTS, "count": len(files)},
        )
    for index, file in enumerate(files):
        if not isinstance(file, MessageAttachment):
            raise SpApiInvalidInput(f"attachment {index + 1} is not a MessageAttachment", details={"index": index})
        for needed, present in (
            ("a file name", isinstance(file.filename, str) and file.filename.strip()),
            ("a content type", isinstance(file.content_type, str) and file.content_type.strip()),
            ("content", isinstance(file.data, bytes | bytearray) and file.data),
        ):
            if not present:
                raise SpApiInvalidInput(f"attachment {index + 1} needs {needed}", details={"index": index})
    return files


def _upload_network_reason(exc: requests.exceptions.RequestException, timeout: float) -> str:
    # Never str(exc): requests puts the URL, query and signature included, in its exceptions' text.
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer from the upload host within {timeout:g}s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "upload host unreachable"
    return f"request failed ({type(exc).__name__})"


_S3_ERROR_CODE = re.compile(r"<Code>\s*([A-Za-z]{1,64})\s*</Code>")
_SIGNED_QUERY = re.compile(r"(?i)x-amz-[a-z-]+=[^\s&\"'<>]+")


def _s3_error_code(response: requests.Response, url: str) -> str:
    """S3's error code (`AccessDenied`, `SignatureDoesNotMatch`, …) from its XML answer, and nothing
    else of it: the rest (StringToSign, CanonicalRequest, …) may quote the signed URL."""
    match = _S3_ERROR_CODE.search(response.text[:4000])
    return _scrub_url(match.group(1), url) if match else ""


def _scrub_url(text: str, url: str) -> str:
    """`text` without the pre-signed URL, its query, or anything shaped like a signing parameter."""
    query = urlsplit(url).query
    for secret in (url, query):
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SIGNED_QUERY.sub("[redacted]", text)


def _backoff(retry: int) -> float:
    return full_jitter(retry, base=BACKOFF_BASE, cap=BACKOFF_CAP)


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether the request failed before any connection to Amazon existed: refused, a name that did
    not resolve, no answer to the connection attempt. requests raises ConnectTimeout for the last, and
    ConnectionError around urllib3's NewConnectionError for the others; a connection lost after the
    request was written (reset, closed, no answer in time) is anything else."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(reason, NewConnectionError)


def _network_reason(exc: requests.exceptions.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "SP-API endpoint unreachable"
    return f"request failed ({type(exc).__name__})"


def _success_body(operation: Operation, response: requests.Response) -> Any:
    if not response.content.strip():
        return None  # the message operations answer 201 with an empty body (or `{}`)
    try:
        return response.json()
    except ValueError:
        raise SpApiUnavailable(
            f"{operation.name}: unexpected answer from Amazon (not JSON)", status=response.status_code
        ) from None


def _error_of(response: requests.Response, tokens: list[str]) -> tuple[str, str]:
    """Amazon's first error code, and all its errors as one clean line (never with our token)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else body
    code = ""
    parts: list[str] = []
    if isinstance(errors, list):
        for error in errors:
            if not isinstance(error, dict):
                continue
            code = code or _text(error.get("code"))
            message, details = _text(error.get("message")), _text(error.get("details"))
            parts.append(f"{message} ({details})" if message and details else message or details)
    return _scrub(code, tokens), _scrub("; ".join(p for p in parts if p), tokens)


def _scrub(text: str, tokens: list[str]) -> str:
    clean = " ".join(text.split())
    for token in tokens:
        if token and len(token) >= 4:
            clean = clean.replace(token, "[redacted]")
    clean = redact(clean)
    return clean[:MAX_ERROR_TEXT]


def _token_trouble(status: int, amazon_code: str, text: str) -> bool:
    """Whether Amazon refused the token itself (expired, revoked, malformed) rather than the role."""
    if status == 401:
        return True  # 401 is about who is calling, never about what they may do
    lowered = text.lower()
    if "expired" in lowered or amazon_code == "InvalidAccessToken":
        return True
    return amazon_code == "Unauthorized" and "token" in lowered


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0


def _order_from(order: dict[str, Any]) -> Order:
    """Maps Orders v2026-01-01's `order` object. Missing parts are empty, never an error: the order
    is context for a ticket, and half of it is better than none."""
    fulfillment = _dict(order.get("fulfillment"))
    channel = _text(fulfillment.get("fulfilledBy")).upper()
    items = []
    for entry in _list(order.get("orderItems")):
        if not isinstance(entry, dict):
            continue
        product = _dict(entry.get("product"))
        unit_price = _dict(_dict(product.get("price")).get("unitPrice"))
        items.append(
            OrderItem(
                asin=_text(product.get("asin")),
                sku=_text(product.get("sellerSku")),
                title=_text(product.get("title")),
                quantity=_int(entry.get("quantityOrdered")),
                price=_text(unit_price.get("amount")),
                currency=_text(unit_price.get("currencyCode")),
            )
        )
    packages = []
    for entry in _list(order.get("packages")):
        if not isinstance(entry, dict):
            continue
        packages.append(
            OrderPackage(
                carrier=_text(entry.get("carrier")),
                tracking_number=_text(entry.get("trackingNumber")),
                status=_text(_dict(entry.get("packageStatus")).get("status")),
            )
        )
    return Order(
        order_id=_text(order.get("orderId")),
        status=_text(fulfillment.get("fulfillmentStatus")),
        purchase_date=_text(order.get("createdTime")),
        latest_ship_date=_text(_dict(fulfillment.get("shipByWindow")).get("latestDateTime")),
        latest_delivery_date=_text(_dict(fulfillment.get("deliverByWindow")).get("latestDateTime")),
        marketplace_id=_text(_dict(order.get("salesChannel")).get("marketplaceId")),
        fulfillment_channel=channel if channel in FULFILLMENT_CHANNELS else "",
        items=tuple(items),
        packages=tuple(packages),
    )
