"""send_replies: queued replies go out through the ticket's channel, are retried with backoff, and
end FAILED with a reason the ticket view shows."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from keybuzz.models import Role
from keybuzz.workers.runner import run_worker
from tests.factories import make_connection, make_member, make_tenant
from tests.tickets.factories import add_message, make_ticket
from tickets.channels import SendResult, TemporaryChannelError
from tickets.delivery import DELIVERY_UNCERTAIN, replies_claim, replies_send_due
from tickets.models import DeliveryStatus, Direction, TicketMessage, TicketStatus


def replies_send_loop(*, stop: threading.Event, on_run) -> None:
    """send_replies' loop mode, as the command runs it (interval 0: the tests stop it themselves)."""
    run_worker(
        once=False,
        interval=0,
        run=lambda should_stop: replies_send_due(should_stop=should_stop),
        report=on_run,
        logger=logging.getLogger("tickets.delivery"),
        log_prefix="[Reply Sender]",
        stop=stop,
    )


@pytest.fixture(autouse=True)
def mock_channel(settings):
    settings.AMAZON_USE_MOCK = True
    settings.TICKETS_AMAZON_ADAPTER = ""
    settings.TICKETS_SEND_MAX_ATTEMPTS = 3
    settings.TICKETS_SEND_BACKOFF_SECONDS = 60
    settings.TICKETS_SEND_BACKOFF_MAX_SECONDS = 3600
    settings.TICKETS_SEND_LEASE_SECONDS = 300


def reply(client, ticket, body: str) -> int:
    response = client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"body": body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def delivery_in_ticket_view(client, ticket, message_id: int) -> dict:
    messages = client.get(f"/api/v1/tickets/{ticket.id}/").json()["messages"]
    return next(m for m in messages if m["id"] == message_id)["delivery"]


def run_command(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("send_replies", "--once", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_mock_channel_delivers_a_reply(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Your parcel left today.")

    code, out = run_command("--json")

    assert code == 0
    assert json.loads(out) | {"seconds": 0} == {
        "claimed": 1,
        "sent": 1,
        "retrying": 0,
        "failed": 0,
        "lost": 0,
        "uploads_deleted": 0,
        "seconds": 0,
    }
    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert delivery["status"] == "SENT"
    assert delivery["attempts"] == 1
    assert delivery["delivered_at"] is not None
    assert delivery["error"] == ""
    assert TicketMessage.objects.get(pk=message_id).delivery_ref == f"mock-{message_id}"
    # Nothing is left to send: a second run is empty and sends nothing twice.
    assert run_command("--json")[1].startswith('{"claimed": 0')


def test_only_queued_replies_leave(admin, admin_client):
    ticket = make_ticket(admin.tenant)  # an INBOUND message
    admin_client.post(f"/api/v1/tickets/{ticket.id}/messages/", {"type": "note", "body": "internal"}, format="json")
    add_message(ticket, direction=Direction.OUTBOUND, body="old, already sent")

    assert replies_send_due().claimed == 0


def test_temporary_failure_is_retried_with_backoff_then_failed_with_its_reason(admin, admin_client):
    t0 = timezone.now()
    ticket = make_ticket(admin.tenant, at=t0 - timedelta(hours=30))
    original_due = ticket.response_due_at
    message_id = reply(admin_client, ticket, "Sorry for the delay [mock-fail]")
    admin_client.patch(f"/api/v1/tickets/{ticket.id}/", {"status": "RESOLVED"}, format="json")
    assert admin_client.get("/api/v1/tickets/", {"overdue": "true"}).json()["results"] == []

    first = replies_send_due(now=t0 + timedelta(seconds=1))
    assert (first.claimed, first.retrying) == (1, 1)
    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert delivery["status"] == "QUEUED"
    assert delivery["attempts"] == 1
    assert "Mock Amazon channel unavailable" in delivery["error"]

    # Not due again before the backoff (60 s after attempt 1, 120 s after attempt 2).
    assert replies_send_due(now=t0 + timedelta(seconds=59)).claimed == 0
    assert replies_send_due(now=t0 + timedelta(seconds=61)).retrying == 1
    assert replies_send_due(now=t0 + timedelta(seconds=61 + 119)).claimed == 0
    third = replies_send_due(now=t0 + timedelta(seconds=61 + 121))
    assert (third.claimed, third.failed) == (1, 1)

    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert delivery["status"] == "FAILED"
    assert delivery["attempts"] == 3
    assert "Mock Amazon channel unavailable" in delivery["error"]
    assert delivery["next_attempt_at"] is None
    assert replies_send_due(now=t0 + timedelta(days=1)).claimed == 0
    # The buyer never got an answer: the ticket is back in the inbox, overdue as before.
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    assert ticket.response_due_at == original_due
    overdue = admin_client.get("/api/v1/tickets/", {"overdue": "true"}).json()["results"]
    assert [row["id"] for row in overdue] == [ticket.id]
    assert overdue[0]["counts"]["failed"] == 1


def test_a_failed_reply_does_not_reopen_a_ticket_answered_since(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    reply(admin_client, ticket, "First try [mock-reject]")
    reply(admin_client, ticket, "Second try, fine")
    admin_client.patch(f"/api/v1/tickets/{ticket.id}/", {"status": "RESOLVED"}, format="json")

    summary = replies_send_due()

    assert (summary.sent, summary.failed) == (1, 1)
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.RESOLVED
    assert ticket.response_due_at is None


def fail_for_good(client, ticket, body: str) -> int:
    message_id = reply(client, ticket, body)
    summary = replies_send_due()
    assert summary.failed == 1, summary
    return message_id


def retry(client, ticket, message_id: int):
    return client.post(f"/api/v1/tickets/{ticket.id}/messages/{message_id}/retry/")


def test_an_agent_sends_a_failed_reply_again(admin, agent_client, settings):
    ticket = make_ticket(admin.tenant)
    due = ticket.response_due_at
    message_id = fail_for_good(agent_client, ticket, "Refund done [mock-reject]")
    ticket.refresh_from_db()
    assert ticket.response_due_at == due  # the buyer was waiting again

    response = retry(agent_client, ticket, message_id)

    assert response.status_code == 200, response.content
    assert response.json()["delivery"] | {"next_attempt_at": None} == {
        "status": "QUEUED",
        "attempts": 0,
        "error": "",
        "next_attempt_at": None,
        "delivered_at": None,
    }
    ticket.refresh_from_db()
    assert ticket.response_due_at is None  # answered, as when the reply was written
    # The cause is fixed (here: the mock channel no longer rejects), and the next run sends it.
    TicketMessage.objects.filter(pk=message_id).update(body="Refund done")
    assert replies_send_due().sent == 1
    assert delivery_in_ticket_view(agent_client, ticket, message_id)["status"] == "SENT"


def test_only_a_failed_reply_can_be_sent_again(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    queued = reply(admin_client, ticket, "On its way")
    note = admin_client.post(
        f"/api/v1/tickets/{ticket.id}/messages/", {"type": "note", "body": "internal"}, format="json"
    ).json()["id"]
    inbound = ticket.messages.get(direction=Direction.INBOUND).id

    refused = retry(admin_client, ticket, queued)
    assert refused.status_code == 409
    assert (refused.json()["code"], refused.json()["details"]) == ("reply_not_failed", {"delivery_status": "QUEUED"})
    for other in (note, inbound, 10**9):  # not a reply: no such reply
        assert retry(admin_client, ticket, other).status_code == 404
    other_ticket = make_ticket(admin.tenant)
    assert retry(admin_client, other_ticket, queued).status_code == 404  # a reply of another ticket


def test_a_closed_tickets_reply_is_not_sent_again(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    message_id = fail_for_good(admin_client, ticket, "Hello [mock-reject]")
    admin_client.patch(f"/api/v1/tickets/{ticket.id}/", {"status": "CLOSED"}, format="json")

    response = retry(admin_client, ticket, message_id)

    assert (response.status_code, response.json()["code"]) == (409, "ticket_closed")
    assert TicketMessage.objects.get(pk=message_id).delivery_status == DeliveryStatus.FAILED


def test_a_flaky_send_goes_through_on_retry(admin, admin_client):
    t0 = timezone.now()
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Hello [mock-fail-once]")

    assert replies_send_due(now=t0 + timedelta(seconds=1)).retrying == 1
    assert replies_send_due(now=t0 + timedelta(seconds=62)).sent == 1
    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert (delivery["status"], delivery["attempts"], delivery["error"]) == ("SENT", 2, "")


def test_a_refused_reply_fails_at_once(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Buy elsewhere [mock-reject]")

    code, out = run_command()

    assert code == 1
    assert "failed=1" in out
    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert (delivery["status"], delivery["attempts"]) == ("FAILED", 1)
    assert "rejected" in delivery["error"]


def test_without_mock_nor_adapter_replies_fail_with_a_clear_reason(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = False
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Hello")

    code, out = run_command("--json")

    assert code == 1
    assert json.loads(out)["failed"] == 1
    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert delivery["status"] == "FAILED"
    assert delivery["error"].startswith("No Amazon sender configured")


class RecordingAdapter:
    """A stand-in for the real Amazon adapter (TICKETS_AMAZON_ADAPTER)."""

    name = "recording"
    sent: Counter = Counter()
    lock = threading.Lock()

    def send_reply(self, ticket, message) -> SendResult:
        with self.lock:
            self.sent[message.pk] += 1
        return SendResult(external_id=f"amzn-{message.pk}")


class FailingAdapter:
    name = "failing"

    def send_reply(self, ticket, message) -> SendResult:
        raise TemporaryChannelError("Amazon relay timed out after 10 s")


class CrashingAdapter:
    name = "crashing"

    def send_reply(self, ticket, message) -> SendResult:
        raise RuntimeError("token=abc123 leaked in a library message")


def test_the_real_adapter_plugs_in_by_setting(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.RecordingAdapter"
    RecordingAdapter.sent.clear()
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Hello")

    assert run_command()[0] == 0
    assert RecordingAdapter.sent == {message_id: 1}
    assert TicketMessage.objects.get(pk=message_id).delivery_ref == f"amzn-{message_id}"


def test_an_adapter_that_cannot_be_imported_is_a_configuration_error(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tickets.nowhere.Adapter"
    reply(admin_client, make_ticket(admin.tenant), "Hello")
    with pytest.raises(CommandError, match="TICKETS_AMAZON_ADAPTER") as error:
        call_command("send_replies", "--once", stdout=io.StringIO())
    assert error.value.returncode == 2


def test_an_unexpected_adapter_error_is_retried_and_its_text_not_shown(admin, admin_client, settings, caplog):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.CrashingAdapter"
    ticket = make_ticket(admin.tenant)
    message_id = reply(admin_client, ticket, "Hello")

    with caplog.at_level(logging.INFO, logger="tickets.delivery"):
        assert replies_send_due().retrying == 1

    delivery = delivery_in_ticket_view(admin_client, ticket, message_id)
    assert delivery["error"] == "Unexpected RuntimeError in the amazon channel"
    assert "abc123" not in caplog.text


def test_log_lines_name_the_tenant_and_never_the_message(admin, admin_client, settings, caplog):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.FailingAdapter"
    ticket = make_ticket(admin.tenant)
    reply(admin_client, ticket, "My private phone is 555-0100")

    with caplog.at_level(logging.INFO, logger="tickets.delivery"):
        replies_send_due()

    assert "[Reply Sender] Send error for reply" in caplog.text
    assert f"for tenant {admin.tenant.id}" in caplog.text
    assert "Amazon relay timed out" in caplog.text
    assert "555-0100" not in caplog.text
    assert "[Reply Sender] Run completed: claimed=1 sent=0 retrying=1" in caplog.text


def test_log_records_carry_the_tenant_and_connection_ids(admin, admin_client, caplog):
    connection = make_connection(admin.tenant)
    ticket = make_ticket(admin.tenant, connection_id=connection.id)
    reply(admin_client, ticket, "Your parcel left today.")

    with caplog.at_level(logging.INFO, logger="tickets.delivery"):
        replies_send_due()

    sent = next(r for r in caplog.records if r.getMessage().startswith("[Reply Sender] Sent reply"))
    assert (sent.tenant_id, sent.connection_id) == (str(admin.tenant.id), str(connection.id))
    completed = next(r for r in caplog.records if "Run completed" in r.getMessage())
    assert completed.connection_id is None  # the run's own line belongs to no connection


def test_a_crashed_workers_reply_is_retried_after_its_lease(admin, admin_client):
    message_id = reply(admin_client, make_ticket(admin.tenant), "Hello")
    t0 = timezone.now()
    assert len(replies_claim(worker="dies-before-sending", now=t0, limit=10)) == 1  # this worker dies before sending

    assert replies_send_due(now=t0 + timedelta(seconds=299)).claimed == 0
    assert replies_send_due(now=t0 + timedelta(seconds=301)).sent == 1
    message = TicketMessage.objects.get(pk=message_id)
    assert (message.delivery_status, message.delivery_attempts) == (DeliveryStatus.SENT, 2)


class SlowAdapter:
    """Takes so long that another worker's run, after the lease, finds the reply mid-send."""

    name = "slow"
    later = None
    calls = 0

    def send_reply(self, ticket, message) -> SendResult:
        SlowAdapter.calls += 1
        if message.delivery_attempts == 1:
            late = replies_send_due(now=SlowAdapter.later)
            assert (late.claimed, late.failed) == (1, 1)  # not sent again: marked uncertain
            assert TicketMessage.objects.get(pk=message.pk).delivery_error == DELIVERY_UNCERTAIN
        return SendResult(external_id=f"slow-{message.delivery_attempts}")


def test_a_send_outlasting_its_lease_is_not_repeated_and_ends_sent(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.SlowAdapter"
    t0 = timezone.now()
    SlowAdapter.later, SlowAdapter.calls = t0 + timedelta(seconds=400), 0
    message_id = reply(admin_client, make_ticket(admin.tenant), "Hello")

    summary = replies_send_due(now=t0 + timedelta(seconds=1))

    # The channel was asked once; the slow worker learnt it accepted the reply, so it is SENT after all.
    assert (SlowAdapter.calls, summary.claimed, summary.sent) == (1, 1, 1)
    message = TicketMessage.objects.get(pk=message_id)
    assert (message.delivery_status, message.delivery_ref, message.delivery_error) == ("SENT", "slow-1", "")
    assert message.send_started_at is None


def test_limit_caps_a_run(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    for i in range(3):
        reply(admin_client, ticket, f"Reply {i}")
    code, out = run_command("--limit", "2", "--json")
    assert (code, json.loads(out)["sent"]) == (0, 2)
    assert json.loads(run_command("--json")[1])["sent"] == 1


def test_loop_mode_runs_until_stopped(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    reply(admin_client, ticket, "Hello")
    stop = threading.Event()
    runs = []

    def on_run(summary):
        runs.append(summary.sent)
        if len(runs) == 2:
            stop.set()

    replies_send_loop(stop=stop, on_run=on_run)

    assert runs == [1, 0]


def test_stopping_mid_run_gives_the_rest_back(admin, admin_client):
    ticket = make_ticket(admin.tenant)
    ids = [reply(admin_client, ticket, f"Reply {i}") for i in range(3)]
    calls = iter([False, True, True])

    summary = replies_send_due(should_stop=lambda: next(calls))

    assert (summary.claimed, summary.sent) == (1, 1)
    rest = TicketMessage.objects.filter(pk__in=ids[1:])
    assert {(m.delivery_status, m.delivery_attempts) for m in rest} == {(DeliveryStatus.QUEUED, 0)}
    assert replies_send_due().sent == 2


class SecondHostAdapter(RecordingAdapter):
    """While the first host sends its first reply, a second host's run starts."""

    second: list = []

    def send_reply(self, ticket, message) -> SendResult:
        if not self.second:
            self.second.append(None)
            self.second[0] = replies_send_due(worker="host-b")
        return super().send_reply(ticket, message)


def test_a_run_leases_a_few_replies_at_a_time_so_a_second_host_gets_the_rest(admin, admin_client, settings):
    """A sender does not lease its whole run up front: another sender started meanwhile finds the
    replies the first has not reached yet (no host idles while replies are due)."""
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.SecondHostAdapter"
    settings.TICKETS_SEND_CLAIM_BATCH = 3
    RecordingAdapter.sent.clear()
    SecondHostAdapter.second.clear()
    ticket = make_ticket(admin.tenant)
    ids = [reply(admin_client, ticket, f"Reply {i}") for i in range(10)]

    first = replies_send_due(worker="host-a")

    (second,) = SecondHostAdapter.second
    assert (first.claimed, first.sent) == (3, 3)  # its first lease; host-b had taken the rest meanwhile
    assert (second.claimed, second.sent) == (7, 7)
    assert RecordingAdapter.sent == Counter({pk: 1 for pk in ids})
    assert set(TicketMessage.objects.filter(pk__in=ids).values_list("delivery_status", flat=True)) == {
        DeliveryStatus.SENT
    }


def test_a_run_sends_at_most_its_limit_in_several_leases(admin, admin_client, settings):
    settings.AMAZON_USE_MOCK = True
    settings.TICKETS_SEND_CLAIM_BATCH = 2
    settings.TICKETS_SEND_BATCH_SIZE = 5
    ticket = make_ticket(admin.tenant)
    for i in range(7):
        reply(admin_client, ticket, f"Reply {i}")
    assert (replies_send_due().sent, replies_send_due().sent, replies_send_due().claimed) == (5, 2, 0)


# --- PostgreSQL: concurrent workers -----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_every_reply_exactly_once(requires_postgres, settings):
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_delivery.RecordingAdapter"
    RecordingAdapter.sent.clear()
    tenant = make_tenant()
    author = make_member(tenant, role=Role.AGENT).user
    now = timezone.now()
    for t in range(40):
        ticket = make_ticket(tenant)
        TicketMessage.objects.bulk_create(
            [
                TicketMessage(
                    tenant=tenant,
                    ticket=ticket,
                    direction=Direction.OUTBOUND,
                    author=author,
                    body=f"Reply {t}.{i}",
                    sent_at=now,
                    delivery_status=DeliveryStatus.QUEUED,
                    next_attempt_at=now,
                )
                for i in range(5)
            ]
        )
    start = threading.Barrier(4)
    summaries = []

    def worker():
        start.wait()
        try:
            while True:
                summary = replies_send_due(limit=7)
                summaries.append(summary)
                if summary.claimed == 0:
                    return
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    queued = TicketMessage.objects.filter(direction=Direction.OUTBOUND)
    assert len(RecordingAdapter.sent) == 200
    assert set(RecordingAdapter.sent.values()) == {1}
    assert sum(s.sent for s in summaries) == 200
    assert set(queued.values_list("delivery_status", "delivery_attempts")) == {(DeliveryStatus.SENT, 1)}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reply_locked_by_another_worker_is_skipped_not_waited_for(requires_postgres):
    tenant = make_tenant()
    ticket = make_ticket(tenant)
    now = timezone.now()
    locked, free = TicketMessage.objects.bulk_create(
        [
            TicketMessage(
                tenant=tenant,
                ticket=ticket,
                direction=Direction.OUTBOUND,
                body=body,
                sent_at=now,
                delivery_status=DeliveryStatus.QUEUED,
                next_attempt_at=now,
            )
            for body in ("held by worker A", "free")
        ]
    )
    holding, done = threading.Event(), threading.Event()

    def worker_a():
        try:
            with transaction.atomic():
                list(TicketMessage.objects.select_for_update().filter(pk=locked.pk))
                holding.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=worker_a)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        summary = replies_send_due()
    finally:
        done.set()
        thread.join(timeout=30)

    assert (summary.claimed, summary.sent) == (1, 1)
    assert TicketMessage.objects.get(pk=free.pk).delivery_status == DeliveryStatus.SENT
    assert TicketMessage.objects.get(pk=locked.pk).delivery_status == DeliveryStatus.QUEUED


def test_loop_mode_survives_a_database_hiccup(admin, admin_client, caplog):
    reply(admin_client, make_ticket(admin.tenant), "Hello")
    failures = iter([True])

    def database_goes_away_once(execute, sql, params, many, context):
        if next(failures, False):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    stop = threading.Event()
    sent = []

    def on_run(summary):
        sent.append(summary.sent)
        stop.set()

    with caplog.at_level(logging.ERROR, logger="tickets.delivery"), connection.execute_wrapper(database_goes_away_once):
        replies_send_loop(stop=stop, on_run=on_run)

    assert sent == [1]
    assert "[Reply Sender] Run error: OperationalError: server closed the connection" in caplog.text
