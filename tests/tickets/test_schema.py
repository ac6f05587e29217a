"""Every ticket endpoint is in the OpenAPI schema with its parameters and error codes."""

from __future__ import annotations

import pytest

from tests.factories import api_client


@pytest.fixture
def schema(db):
    response = api_client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _param_names(operation) -> set[str]:
    return {p["name"] for p in operation.get("parameters", [])}


def test_ticket_endpoints_are_documented(schema):
    paths = schema["paths"]
    listing = paths["/api/v1/tickets/"]["get"]
    assert {"status", "channel", "assignee", "connection", "overdue", "q", "ordering", "cursor", "limit"} <= (
        _param_names(listing)
    )
    assert {"200", "400", "401"} <= set(listing["responses"])
    assert "invalid_filter" in listing["responses"]["400"]["description"]

    detail = paths["/api/v1/tickets/{ticket_id}/"]
    assert {"200", "404"} <= set(detail["get"]["responses"])
    assert {"200", "400", "403", "404", "409"} <= set(detail["patch"]["responses"])
    assert "invalid_transition" in detail["patch"]["responses"]["409"]["description"]
    assert "invalid_assignee" in detail["patch"]["responses"]["400"]["description"]

    reply = paths["/api/v1/tickets/{ticket_id}/messages/"]["post"]
    assert {"201", "400", "404", "409"} <= set(reply["responses"])
    assert "body_too_long" in reply["responses"]["400"]["description"]

    assert "200" in paths["/api/v1/tickets/stats/"]["get"]["responses"]
    error = schema["components"]["schemas"]["Error"]
    assert {"code", "message"} <= set(error["properties"])


def test_ai_endpoints_are_documented(schema):
    paths = schema["paths"]
    draft = paths["/api/v1/tickets/{ticket_id}/draft-reply"]["post"]
    assert {"200", "401", "403", "404", "429", "502", "503", "504"} <= set(draft["responses"])
    assert "ai_disabled" in draft["responses"]["403"]["description"]
    assert "ai_quota_exceeded" in draft["responses"]["429"]["description"]
    assert "ai_unavailable" in draft["responses"]["502"]["description"]
    assert "ai_not_configured" in draft["responses"]["503"]["description"]
    assert "ai_timeout" in draft["responses"]["504"]["description"]
    ref = draft["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"draft", "language", "violations"} <= set(schema["components"]["schemas"][ref]["properties"])

    translate = paths["/api/v1/tickets/{ticket_id}/messages/{message_id}/translate"]["post"]
    assert {"ticket_id", "message_id"} <= _param_names(translate)
    assert {"200", "400", "404", "429", "502", "503", "504"} <= set(translate["responses"])
    body = translate["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "to" in schema["components"]["schemas"][body]["required"]

    settings = paths["/api/v1/tenant/settings"]
    assert {"200", "401"} <= set(settings["get"]["responses"])
    assert {"200", "400", "403"} <= set(settings["patch"]["responses"])
    assert "role_forbidden" in settings["patch"]["responses"]["403"]["description"]
