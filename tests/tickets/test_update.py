from __future__ import annotations

import itertools

import pytest

from keybuzz.models import Role
from tests.factories import api_client, make_member, make_tenant, make_user
from tests.tickets.factories import make_ticket
from tickets.models import Ticket, TicketStatus

OPEN, PENDING, RESOLVED, CLOSED = TicketStatus.values
ALLOWED = {
    (OPEN, PENDING),
    (OPEN, RESOLVED),
    (OPEN, CLOSED),
    (PENDING, OPEN),
    (PENDING, RESOLVED),
    (PENDING, CLOSED),
    (RESOLVED, OPEN),
    (RESOLVED, CLOSED),
    (CLOSED, OPEN),
}
CHANGES = [(a, b) for a, b in itertools.product(TicketStatus.values, repeat=2) if a != b]


def patch(client, ticket, payload):
    return client.patch(f"/api/v1/tickets/{ticket.id}/", payload, format="json")


@pytest.mark.parametrize("current, target", sorted(ALLOWED))
def test_allowed_transitions(admin, admin_client, current, target):
    ticket = make_ticket(admin.tenant, status=current)
    response = patch(admin_client, ticket, {"status": target})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == target
    ticket.refresh_from_db()
    assert ticket.status == target


@pytest.mark.parametrize("current, target", sorted(set(CHANGES) - ALLOWED))
def test_refused_transitions_answer_409(admin, admin_client, current, target):
    ticket = make_ticket(admin.tenant, status=current)
    response = patch(admin_client, ticket, {"status": target})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert body["details"]["from"] == current and body["details"]["to"] == target
    ticket.refresh_from_db()
    assert ticket.status == current


def test_same_status_is_a_no_op(admin, admin_client):
    ticket = make_ticket(admin.tenant, status=RESOLVED)
    assert patch(admin_client, ticket, {"status": RESOLVED}).status_code == 200


def test_a_misspelt_field_is_refused_and_the_ticket_is_unchanged(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    response = patch(admin_client, ticket, {"status": RESOLVED, "asignee": admin.user.id})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_input"
    assert list(response.json()["details"]) == ["asignee"]
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee_id) == (OPEN, None)


def test_unknown_status_and_empty_patch_are_invalid_input(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    for payload in ({"status": "DONE"}, {}):
        response = patch(admin_client, ticket, payload)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_input"


def test_patch_answers_with_the_full_ticket(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    body = patch(admin_client, ticket, {"status": PENDING, "assignee": admin.user.id}).json()
    assert body["status"] == PENDING
    assert body["assignee"]["id"] == admin.user.id
    assert [m["direction"] for m in body["messages"]] == ["INBOUND"]


# --- Assignee -------------------------------------------------------------------------------------


def test_admin_assigns_a_member_and_unassigns(admin, agent, admin_client):
    ticket = make_ticket(admin.tenant)
    assert patch(admin_client, ticket, {"assignee": agent.user.id}).json()["assignee"]["id"] == agent.user.id
    assert patch(admin_client, ticket, {"assignee": None}).json()["assignee"] is None
    ticket.refresh_from_db()
    assert ticket.assignee_id is None


def test_assignee_from_another_tenant_is_refused(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    stranger = make_member(make_tenant(), role=Role.AGENT)

    response = patch(admin_client, ticket, {"assignee": stranger.user.id})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_assignee"
    ticket.refresh_from_db()
    assert ticket.assignee_id is None


def test_assignee_must_be_an_active_member(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    inactive = make_member(admin.tenant, role=Role.AGENT)
    inactive.user.is_active = False
    inactive.user.save(update_fields=["is_active"])
    for user_id in (inactive.user.id, make_user().id, 999_999):  # inactive, no membership, no such user
        response = patch(admin_client, ticket, {"assignee": user_id})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_assignee"


def test_status_and_assignee_change_together_or_not_at_all(admin, admin_client):
    ticket = make_ticket(admin.tenant, status=CLOSED)
    response = patch(admin_client, ticket, {"status": PENDING, "assignee": admin.user.id})
    assert response.status_code == 409
    ticket.refresh_from_db()
    assert ticket.assignee_id is None


# --- Roles ----------------------------------------------------------------------------------------


def test_agent_moves_tickets_between_open_pending_and_resolved(agent, agent_client):
    ticket = make_ticket(agent.tenant)
    for target in (PENDING, OPEN, RESOLVED, OPEN):
        assert patch(agent_client, ticket, {"status": target}).status_code == 200


def test_agent_cannot_close_nor_reopen_a_closed_ticket(agent, agent_client):
    ticket = make_ticket(agent.tenant)
    response = patch(agent_client, ticket, {"status": CLOSED})
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"

    closed = make_ticket(agent.tenant, status=CLOSED)
    response = patch(agent_client, closed, {"status": OPEN})
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owner_and_admin_close_and_reopen(tenant, role):
    client = api_client(make_member(tenant, role=role))
    ticket = make_ticket(tenant)
    assert patch(client, ticket, {"status": CLOSED}).status_code == 200
    assert patch(client, ticket, {"status": OPEN}).status_code == 200


def test_agent_takes_and_releases_a_ticket(agent, agent_client):
    ticket = make_ticket(agent.tenant)
    assert patch(agent_client, ticket, {"assignee": agent.user.id}).json()["assignee"]["id"] == agent.user.id
    assert patch(agent_client, ticket, {"assignee": None}).json()["assignee"] is None


def test_agent_cannot_assign_others_nor_release_a_colleagues_ticket(agent, admin, agent_client):
    ticket = make_ticket(agent.tenant)
    response = patch(agent_client, ticket, {"assignee": admin.user.id})
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"

    Ticket.objects.filter(pk=ticket.pk).update(assignee=admin.user)
    response = patch(agent_client, ticket, {"assignee": None})
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"
    ticket.refresh_from_db()
    assert ticket.assignee_id == admin.user.id


def test_agent_may_take_over_a_colleagues_ticket(agent, admin, agent_client):
    ticket = make_ticket(agent.tenant, assignee=admin.user)
    assert patch(agent_client, ticket, {"assignee": agent.user.id}).json()["assignee"]["id"] == agent.user.id
