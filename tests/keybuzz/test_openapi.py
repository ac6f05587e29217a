from __future__ import annotations

import pytest
import yaml


@pytest.mark.django_db
def test_schema_lists_the_api_with_bearer_auth(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert {"/api/v1/auth/token", "/api/v1/auth/token/refresh", "/api/v1/me", "/health"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"
    assert "401" in schema["paths"]["/api/v1/me"]["get"]["responses"]


@pytest.mark.django_db
def test_docs_page_is_served_without_a_cdn(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr.net" not in page


@pytest.mark.django_db
def test_every_request_body_says_it_takes_no_other_field(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    components = schema["components"]["schemas"]
    bodies = set()
    for path in schema["paths"].values():
        for operation in path.values():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                bodies.add(media["schema"]["$ref"].rsplit("/", 1)[1])
    assert {"TicketMessageCreateRequest", "MailboxInputRequest", "ImapInputRequest"} <= bodies | set(components)
    assert len(bodies) >= 10
    requests = [name for name in components if name.endswith("Request")]
    assert set(bodies) <= set(requests)
    assert [name for name in requests if components[name].get("additionalProperties") is not False] == []
