"""schemathesis over the whole OpenAPI schema, with a tenant JWT and without one: no 5xx, and every
answer conforms to the schema (status, content type, headers, body). Fixed seed, bounded examples.

The schema is the one `/api/schema/` serves, generated here at collection (drf-spectacular), and
the calls go to the WSGI application inside the test's database transaction.

Two of schemathesis' checks are left out, on purpose: "schema-valid request rejected" and
"schema-violating request accepted" compare what the API accepts with what the schema can say.
The API also validates what OpenAPI cannot express (the assignee must be a member of the tenant, a
body must hold more than white space, a marketplace code must exist), and reads a JSON number
where a string is documented as DRF does; the constraints OpenAPI can express (patterns, ranges,
lengths, enums, NUL characters) are in the schema."""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from keybuzz.wsgi import application
from tests.factories import api_client, make_member
from tests.tickets.factories import make_ticket

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application

CONFIG = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


EXCLUDED = [positive_data_acceptance, negative_data_rejection]


@pytest.fixture(autouse=True)
def keep_the_test_transaction():
    """The WSGI application sends request_started/finished, whose close_old_connections would close
    the connection holding the test's transaction; Django's own test client unhooks it the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def amazon_app(settings):
    """An SP-API app, so that starting the OAuth flow can succeed (without one it is a 503)."""
    settings.AMAZON_SPAPI_CLIENT_ID = "amzn1.application-oa2-client.schemathesis"
    settings.AMAZON_SPAPI_CLIENT_SECRET = "amzn1.oa2-cs.v1.schemathesis-secret"
    settings.AMAZON_SPAPI_APPLICATION_ID = "amzn1.sp.solution.schemathesis"
    settings.AMAZON_USE_MOCK = False


@pytest.fixture(autouse=True)
def ai_configured(ai_gateway):
    """A gateway for the AI endpoints (the local OpenAI-compatible fake): without one they answer 503."""
    return ai_gateway


@pytest.fixture
def tenant_jwt(db) -> str:
    member = make_member()
    make_ticket(member.tenant)
    return str(api_client(member)._credentials["HTTP_AUTHORIZATION"])  # type: ignore[attr-defined]


@pytest.mark.django_db
@schema.parametrize()
@CONFIG
def test_with_a_tenant_jwt(case, tenant_jwt):
    case.call_and_validate(headers={"Authorization": tenant_jwt}, excluded_checks=EXCLUDED)


@pytest.mark.django_db
@schema.parametrize()
@CONFIG
def test_without_a_jwt(case):
    case.call_and_validate(excluded_checks=EXCLUDED)
