"""One error shape for the whole API: `{"code": "...", "message": "..."}` (+ `details`).

Services raise `ApplicationError` (or a subclass) with a machine-readable code; the API answers it,
and maps DRF's own exceptions to the same shape, in `keybuzz.exception_handler`. This module
imports nothing from DRF's views, so anything (authentication included) may raise these errors.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status


class ApplicationError(Exception):
    """A failure the caller can act on. `message` must never contain a secret."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "invalid_request"

    def __init__(
        self, message: str, *, code: str | None = None, status_code: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.details = details


class AuthenticationError(ApplicationError):
    """Missing, wrong or no longer valid credentials (answered with a Bearer challenge)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    code = "not_authenticated"


class NotFoundError(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class ForbiddenError(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class ConflictError(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class BadGatewayError(ApplicationError):
    """A system KeyBuzz calls (Amazon, …) failed or could not be reached."""

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "bad_gateway"


class ServiceUnavailableError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"


class SecretStoreUnavailableError(ServiceUnavailableError):
    """The secret store could not be read or written (down, sealed, network): retry later."""

    code = "secret_store_unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body
