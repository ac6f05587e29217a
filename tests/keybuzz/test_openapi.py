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
