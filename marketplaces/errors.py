"""The Amazon channel's API errors: what services raise and the API answers (`{"code", "message"}`)."""

from __future__ import annotations

from keybuzz.errors import ApplicationError, BadGatewayError, ServiceUnavailableError


class InvalidState(ApplicationError):
    code = "invalid_state"


class AuthorizationDenied(ApplicationError):
    code = "authorization_denied"


class TokenExchangeRejected(ApplicationError):
    """LWA refused the authorization code (used, expired, wrong app): the seller starts again."""

    code = "token_exchange_failed"


class TokenExchangeUnavailable(BadGatewayError):
    """LWA could not be reached, or kept failing: the seller may retry later."""

    code = "token_exchange_failed"


class CredentialsMissingError(ServiceUnavailableError):
    """The SP-API app is not configured ("No credentials found: …")."""

    code = "credentials_missing"
