"""The relay mailbox settings API (`/api/v1/marketplaces/amazon/connections/<id>/mailbox`): a real
login and folder check against the test Dovecot, the password only in the secret store, the
owner/admin-only and tenant-scoped access, and what the status, disconnect and poller do with it."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

import pytest
from django.db import connection as db
from django.utils import timezone
from rest_framework.test import APIClient

from keybuzz.models import Role
from keybuzz.secrets import SecretNotFound, get_secret_store
from marketplaces.mailbox.passwords import mailbox_password_path
from marketplaces.models import ConnectionStatus, Mailbox, MarketplaceConnection
from tests.factories import api_client, make_connection, make_member
from tests.marketplaces.mailbox.helpers import mailbox_connect, poll, relay_mail
from tests.net import free_port
from tickets.models import TicketMessage

pytestmark = pytest.mark.django_db

STATUS_URL = "/api/v1/marketplaces/amazon/status"
DISCONNECT_URL = "/api/v1/marketplaces/amazon/disconnect"
STORED_PASSWORD = "Stored-Mailbox-Pw-7c1e9a"


@pytest.fixture(autouse=True)
def mailbox_only(settings):
    """Only the relay mailbox reads messages; one poller worker (the test's transaction is not
    visible to other threads); failures answer fast."""
    settings.AMAZON_USE_MOCK = False
    settings.AMAZON_MESSAGE_SOURCE = ""
    settings.AMAZON_POLL_WORKERS = 1
    settings.AMAZON_MAILBOX_TIMEOUT = 5.0
    settings.AMAZON_MAILBOX_CA_FILE = ""


@pytest.fixture
def connection(owner):
    return make_connection(owner.tenant)


def url(connection_id) -> str:
    return f"/api/v1/marketplaces/amazon/connections/{connection_id}/mailbox"


def put(client, connection_id, **imap):
    return client.put(url(connection_id), {"imap": imap}, format="json")


def imap_of(user, **overrides):
    """The PUT body's `imap` for a test user on the plain-text Dovecot (loopback, security none)."""
    return {
        "host": "127.0.0.1",
        "port": user.server.port,
        "security": "none",
        "username": user.username,
        "password": user.password,
        "folder": "INBOX",
        **overrides,
    }


def make_mailbox(connection, *, password=STORED_PASSWORD, **fields) -> Mailbox:
    """Mailbox settings as the service leaves them (password in the store), without a check."""
    path = mailbox_password_path(tenant_id=connection.tenant_id, connection_id=connection.id, protocol="imap")
    get_secret_store().write(path, {"password": password})
    fields.setdefault("imap_host", "127.0.0.1")
    fields.setdefault("imap_port", 993)
    fields.setdefault("imap_security", "tls")
    fields.setdefault("imap_username", f"seller-{connection.selling_partner_id.lower()}")
    fields.setdefault("imap_folder", "INBOX")
    return Mailbox.objects.create(connection=connection, tenant=connection.tenant, imap_secret_ref=path, **fields)


def stored_password(path: str) -> str:
    return get_secret_store().read(path)["password"]


def every_database_value() -> str:
    """Every row of every table, as text."""
    dump: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")  # table names come from introspection
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def log_text(caplog) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["message"]
    return body


# --- PUT: save and check --------------------------------------------------------------------


def test_put_checks_the_login_and_keeps_the_password_only_in_the_secret_store(
    owner_client, connection, mailbox_user, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    response = put(owner_client, connection.id, **imap_of(mailbox_user))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["connectionId"] == str(connection.id)
    assert body["imap"] == {
        "host": "127.0.0.1",
        "port": mailbox_user.server.port,
        "security": "none",
        "username": mailbox_user.username,
        "folder": "INBOX",
        "passwordSet": True,
    }
    assert body["check"] == {"imap": {"ok": True}}
    assert body["updatedAt"]
    assert set(body) == {"connectionId", "imap", "smtp", "check", "updatedAt"}
    assert body["smtp"] is None  # no SMTP settings: replies do not leave from this mailbox

    mailbox = Mailbox.objects.get(connection=connection)
    assert mailbox.tenant_id == connection.tenant_id
    assert (mailbox.last_error, mailbox.last_error_code, mailbox.last_error_at) == ("", "", None)
    assert mailbox.imap_secret_ref == mailbox_password_path(
        tenant_id=connection.tenant_id, connection_id=connection.id, protocol="imap"
    )
    assert stored_password(mailbox.imap_secret_ref) == mailbox_user.password

    # The password appears nowhere else: response, database, logs, console.
    get_body = owner_client.get(url(connection.id)).content.decode()
    status_body = owner_client.get(STATUS_URL).content.decode()
    captured = capsys.readouterr()
    secret = mailbox_user.password
    assert secret not in response.content.decode()
    assert secret not in get_body and secret not in status_body
    rows = [repr(list(Mailbox.objects.values())), repr(list(MarketplaceConnection.objects.values()))]
    assert all(secret not in text for text in rows)
    assert secret not in every_database_value()
    assert "Mailbox settings saved" in log_text(caplog)  # the logs were captured…
    assert secret not in log_text(caplog)  # …and hold no password
    assert secret not in captured.out and secret not in captured.err


def test_put_defaults_folder_security_and_port(owner_client, connection):
    # Nothing listens on 127.0.0.1:993 or :143 here: the check fails, the defaults are saved.
    response = put(owner_client, connection.id, host="127.0.0.1", username="seller", password=STORED_PASSWORD)
    assert response.status_code == 200, response.content
    imap = response.json()["imap"]
    assert (imap["security"], imap["port"], imap["folder"]) == ("tls", 993, "INBOX")

    for security in ("starttls", "none"):
        response = put(owner_client, connection.id, host="127.0.0.1", username="seller", security=security)
        assert response.status_code == 200, response.content
        assert response.json()["imap"]["port"] == 143
        assert response.json()["imap"]["security"] == security
    mailbox = Mailbox.objects.get(connection=connection)
    assert (mailbox.imap_port, mailbox.imap_security, mailbox.imap_folder) == (143, "none", "INBOX")


def test_a_misspelt_key_is_refused_and_the_saved_settings_stay(owner_client, connection):
    """`passwd` for `password` would otherwise save the settings and keep the old password."""
    mailbox = make_mailbox(connection)
    typo = "New-Mailbox-Pw-5d2f"
    response = put(owner_client, connection.id, host="imap.example.com", username="seller", passwd=typo)

    body = assert_error(response, 400, "invalid_input")
    assert body["message"].startswith("imap: passwd: Unknown field; this takes host, port, username, password")
    assert list(body["details"]) == ["imap"] and list(body["details"]["imap"]) == ["passwd"]
    assert typo not in response.content.decode()  # the key is named, never the value
    mailbox.refresh_from_db()
    assert mailbox.imap_host == "127.0.0.1"
    assert stored_password(mailbox.imap_secret_ref) == STORED_PASSWORD

    imap = {"host": "imap.example.com", "username": "seller"}
    unknown_top = owner_client.put(
        url(connection.id), {"imap": imap, "smpt": {"host": "smtp.example.com"}}, format="json"
    )
    assert list(assert_error(unknown_top, 400, "invalid_input")["details"]) == ["smpt"]


def test_a_wrong_password_is_saved_with_a_failed_check(owner_client, connection, mailbox_user, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Not-The-Password-42"
    response = put(owner_client, connection.id, **imap_of(mailbox_user, password=wrong))

    assert response.status_code == 200, response.content
    body = response.json()
    check = body["check"]["imap"]
    assert check["ok"] is False and check["code"] == "mailbox_auth_failed"
    assert mailbox_user.username in check["message"] and "127.0.0.1" in check["message"]
    assert wrong not in check["message"] and wrong not in response.content.decode()
    assert body["imap"]["passwordSet"] is True
    # Saved all the same, so the seller only fixes the password.
    mailbox = Mailbox.objects.get(connection=connection)
    assert (mailbox.imap_username, mailbox.last_error_code) == (mailbox_user.username, "mailbox_auth_failed")
    assert mailbox.last_error_at is not None
    assert stored_password(mailbox.imap_secret_ref) == wrong

    # GET shows the last known state: the same failure.
    got = owner_client.get(url(connection.id))
    assert got.status_code == 200
    assert got.json()["check"]["imap"] == check
    assert got.json()["imap"] == body["imap"]
    assert "check failed" in log_text(caplog) and wrong not in log_text(caplog)


def test_a_missing_folder_is_reported(owner_client, connection, mailbox_user):
    response = put(owner_client, connection.id, **imap_of(mailbox_user, folder="Amazon/Buyers"))
    assert response.status_code == 200, response.content
    check = response.json()["check"]["imap"]
    assert (check["ok"], check["code"]) == (False, "mailbox_folder_missing")
    assert "Amazon/Buyers" in check["message"]
    assert Mailbox.objects.get(connection=connection).imap_folder == "Amazon/Buyers"


def test_another_existing_folder_is_accepted(owner_client, connection, mailbox_user):
    mailbox_user.server.create_folder(mailbox_user.username, "Amazon")
    response = put(owner_client, connection.id, **imap_of(mailbox_user, folder="Amazon"))
    assert response.status_code == 200
    assert response.json()["check"] == {"imap": {"ok": True}}
    assert response.json()["imap"]["folder"] == "Amazon"


def test_a_closed_port_is_unreachable(owner_client, connection):
    port = free_port()
    response = put(
        owner_client,
        connection.id,
        host="127.0.0.1",
        port=port,
        security="none",
        username="seller",
        password=STORED_PASSWORD,
    )
    assert response.status_code == 200, response.content
    check = response.json()["check"]["imap"]
    assert (check["ok"], check["code"]) == (False, "mailbox_unreachable")
    assert f"127.0.0.1:{port}" in check["message"]
    assert STORED_PASSWORD not in response.content.decode()


# --- TLS ------------------------------------------------------------------------------------


def test_implicit_tls_with_an_untrusted_certificate_fails(owner_client, connection, mailbox_user_tls):
    server = mailbox_user_tls.server
    response = put(owner_client, connection.id, **imap_of(mailbox_user_tls, security="tls", port=server.tls_port))
    assert response.status_code == 200, response.content
    check = response.json()["check"]["imap"]
    assert (check["ok"], check["code"]) == (False, "mailbox_tls_error")
    assert "not trusted" in check["message"]
    assert mailbox_user_tls.password not in response.content.decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # the names the test certificate is issued for
def test_implicit_tls_with_the_operator_ca_succeeds(
    owner_client, connection, mailbox_user_tls, mail_ca, settings, host
):
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    server = mailbox_user_tls.server
    response = put(
        owner_client, connection.id, **imap_of(mailbox_user_tls, host=host, security="tls", port=server.tls_port)
    )
    assert response.status_code == 200, response.content
    assert response.json()["check"] == {"imap": {"ok": True}}
    assert response.json()["imap"]["host"] == host


def test_starttls_with_the_operator_ca_succeeds(owner_client, connection, mailbox_user_tls, mail_ca, settings):
    settings.AMAZON_MAILBOX_CA_FILE = str(mail_ca.ca_path)
    response = put(owner_client, connection.id, **imap_of(mailbox_user_tls, security="starttls"))
    assert response.status_code == 200, response.content
    assert response.json()["check"] == {"imap": {"ok": True}}
    assert response.json()["imap"]["security"] == "starttls"


# --- Password kept or required ------------------------------------------------------------------


def test_a_second_put_without_password_keeps_the_stored_one(owner_client, connection, mailbox_user):
    assert put(owner_client, connection.id, **imap_of(mailbox_user)).json()["check"]["imap"]["ok"] is True
    body = imap_of(mailbox_user)
    del body["password"]
    response = put(owner_client, connection.id, **body)
    assert response.status_code == 200, response.content
    assert response.json()["check"] == {"imap": {"ok": True}}
    assert response.json()["imap"]["passwordSet"] is True
    mailbox = Mailbox.objects.get(connection=connection)
    assert stored_password(mailbox.imap_secret_ref) == mailbox_user.password


def test_a_first_put_without_password_is_refused(owner_client, connection):
    response = put(owner_client, connection.id, host="127.0.0.1", security="none", username="seller")
    body = assert_error(response, 400, "invalid_input")
    assert "password" in body["message"]
    assert not Mailbox.objects.exists()
    path = mailbox_password_path(tenant_id=connection.tenant_id, connection_id=connection.id, protocol="imap")
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)


# --- Refused hosts --------------------------------------------------------------------------


def _nothing_saved(connection) -> None:
    assert not Mailbox.objects.filter(connection=connection).exists()
    path = mailbox_password_path(tenant_id=connection.tenant_id, connection_id=connection.id, protocol="imap")
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)


def test_plain_text_to_a_remote_host_is_refused(owner_client, connection):
    response = put(
        owner_client,
        connection.id,
        host="imap.example.com",
        security="none",
        username="seller",
        password=STORED_PASSWORD,
    )
    body = assert_error(response, 400, "insecure_mailbox")
    assert STORED_PASSWORD not in body["message"]
    _nothing_saved(connection)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254"])
def test_private_hosts_are_refused_unless_the_operator_allows_them(owner_client, connection, settings, host):
    settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS = False
    response = put(owner_client, connection.id, host=host, security="tls", username="seller", password=STORED_PASSWORD)
    body = assert_error(response, 400, "mailbox_host_not_allowed")
    assert host in body["message"] and STORED_PASSWORD not in body["message"]
    _nothing_saved(connection)


def test_a_refused_host_leaves_existing_settings_alone(owner_client, connection, settings):
    mailbox = make_mailbox(connection, imap_host="imap.example.org")
    settings.AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS = False
    response = put(owner_client, connection.id, host="127.0.0.1", username="other", password="New-Password-1")
    assert_error(response, 400, "mailbox_host_not_allowed")
    after = Mailbox.objects.get(connection=connection)
    assert (after.imap_host, after.imap_username) == ("imap.example.org", mailbox.imap_username)
    assert stored_password(after.imap_secret_ref) == STORED_PASSWORD


# --- Bad input ------------------------------------------------------------------------------

GOOD = {"host": "imap.example.com", "port": 993, "security": "tls", "username": "seller", "password": "pw"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "imap", id="missing-imap"),
        pytest.param({"imap": None}, "imap", id="imap-null"),
        pytest.param({"imap": "imap.example.com"}, "imap", id="imap-not-an-object"),
        pytest.param({"imap": {**GOOD, "host": "imap example.com"}}, "host", id="host-with-space"),
        pytest.param({"imap": {**GOOD, "host": "imap.example.com\r\nX: y"}}, "host", id="host-with-crlf"),
        pytest.param({"imap": {**GOOD, "host": "imap.\x00example.com"}}, "host", id="host-with-nul"),
        pytest.param({"imap": {**GOOD, "host": ""}}, "host", id="host-empty"),
        pytest.param({"imap": {**GOOD, "host": "a" * 300}}, "host", id="host-too-long"),
        pytest.param({"imap": {**GOOD, "port": 0}}, "port", id="port-0"),
        pytest.param({"imap": {**GOOD, "port": 70000}}, "port", id="port-70000"),
        pytest.param({"imap": {**GOOD, "port": "abc"}}, "port", id="port-abc"),
        pytest.param({"imap": {**GOOD, "port": -1}}, "port", id="port-negative"),
        pytest.param({"imap": {**GOOD, "security": "ssl"}}, "security", id="unknown-security"),
        pytest.param({"imap": {**GOOD, "username": "seller\nA1 DELETE INBOX"}}, "username", id="username-newline"),
        pytest.param({"imap": {**GOOD, "username": ""}}, "username", id="username-empty"),
        pytest.param({"imap": {**GOOD, "password": "pa\x00ss"}}, "password", id="password-nul"),
        pytest.param({"imap": {**GOOD, "password": "pa\r\nss"}}, "password", id="password-crlf"),
        pytest.param({"imap": {**GOOD, "folder": "INBOX\r\nA1 LOGOUT"}}, "folder", id="folder-crlf"),
        pytest.param("just a string", "", id="body-a-string"),
        pytest.param(["imap"], "", id="body-a-list"),
        pytest.param(42, "", id="body-a-number"),
    ],
)
def test_bad_input_is_a_400_never_a_500(owner_client, connection, body, field):
    response = owner_client.put(url(connection.id), data=json.dumps(body), content_type="application/json")
    result = assert_error(response, 400, "invalid_input")
    assert field in result["message"]
    assert "pa\x00ss" not in response.content.decode()
    _nothing_saved(connection)


def test_a_non_ascii_password_logs_in(owner_client, connection, dovecot):
    user = dovecot.add_user(password="Pässwörd-ü-1")  # sent with SASL PLAIN (UTF-8): LOGIN is ASCII only
    response = put(owner_client, connection.id, host="127.0.0.1", port=dovecot.port, security="none",
                   username=user.username, password=user.password)  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["check"] == {"imap": {"ok": True}}


def test_a_non_ascii_username_is_checked_not_a_500(owner_client, connection, dovecot):
    response = put(owner_client, connection.id, host="127.0.0.1", port=dovecot.port, security="none",
                   username="jösé", password="ascii-password")  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["check"]["imap"]["code"] == "mailbox_auth_failed"


def test_a_body_that_is_not_json_is_a_400(owner_client, connection):
    response = owner_client.put(url(connection.id), data=b"{imap:", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"]
    _nothing_saved(connection)


def test_an_international_host_name_is_kept_in_its_ascii_form(owner_client, connection):
    response = put(
        owner_client,
        connection.id,
        host="IMAP.Bücher.example",
        port=free_port(),
        username="seller",
        password=STORED_PASSWORD,
    )
    assert response.status_code == 200, response.content
    assert response.json()["imap"]["host"] == "imap.xn--bcher-kva.example"


# --- GET and DELETE -------------------------------------------------------------------------


def test_get_returns_the_saved_settings(owner_client, connection, mailbox_user):
    saved = put(owner_client, connection.id, **imap_of(mailbox_user)).json()
    response = owner_client.get(url(connection.id))
    assert response.status_code == 200
    assert response.json() == saved
    assert mailbox_user.password not in response.content.decode()


def test_get_without_mailbox_is_not_configured(owner_client, connection):
    assert_error(owner_client.get(url(connection.id)), 404, "mailbox_not_configured")


def test_delete_removes_the_settings_and_the_password(owner_client, connection):
    mailbox = make_mailbox(connection)
    MarketplaceConnection.objects.filter(pk=connection.pk).update(poll_cursor="imap:v1;uidvalidity=7;uid=12;since=")
    path = mailbox.imap_secret_ref

    response = owner_client.delete(url(connection.id))
    assert response.status_code == 204
    assert not response.content
    assert not Mailbox.objects.filter(connection=connection).exists()
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)
    connection.refresh_from_db()
    assert connection.poll_cursor == ""
    assert connection.status == ConnectionStatus.CONNECTED  # the connection itself stays

    assert_error(owner_client.delete(url(connection.id)), 404, "mailbox_not_configured")
    assert_error(owner_client.get(url(connection.id)), 404, "mailbox_not_configured")


def test_admins_may_manage_the_mailbox(connection):
    admin = make_member(connection.tenant, role=Role.ADMIN)
    client = api_client(admin)
    make_mailbox(connection)
    assert client.get(url(connection.id)).status_code == 200
    response = put(client, connection.id, host="127.0.0.1", port=free_port(), username="seller")
    assert response.status_code == 200
    assert client.delete(url(connection.id)).status_code == 204


# --- Who may do what ------------------------------------------------------------------------


def _snapshot(connection) -> tuple:
    mailbox = Mailbox.objects.filter(connection=connection).values().first()
    row = MarketplaceConnection.objects.filter(pk=connection.pk).values().first()
    return mailbox, row, stored_password(mailbox["imap_secret_ref"]) if mailbox else None


def test_agents_are_refused(connection):
    make_mailbox(connection)
    agent = api_client(make_member(connection.tenant, role=Role.AGENT))
    before = _snapshot(connection)
    assert_error(agent.get(url(connection.id)), 403, "role_forbidden")
    assert_error(
        put(agent, connection.id, host="127.0.0.1", port=free_port(), username="x", password="y"), 403, "role_forbidden"
    )
    assert_error(agent.delete(url(connection.id)), 403, "role_forbidden")
    assert _snapshot(connection) == before


def test_another_tenants_connection_is_not_found(owner_client):
    other = make_connection(make_member().tenant)
    make_mailbox(other)
    MarketplaceConnection.objects.filter(pk=other.pk).update(poll_cursor="imap:v1;uidvalidity=1;uid=3;since=")
    before = _snapshot(other)

    assert_error(owner_client.get(url(other.id)), 404, "connection_not_found")
    response = put(
        owner_client,
        other.id,
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username="thief",
        password="Thiefs-Password-1",
    )
    assert_error(response, 404, "connection_not_found")
    assert_error(owner_client.delete(url(other.id)), 404, "connection_not_found")
    assert _snapshot(other) == before


def test_another_tenants_connection_without_mailbox_is_not_found_either(owner_client):
    """Not `mailbox_not_configured`: that would tell the caller the id exists elsewhere."""
    other = make_connection(make_member().tenant)
    assert_error(owner_client.get(url(other.id)), 404, "connection_not_found")
    assert_error(owner_client.delete(url(other.id)), 404, "connection_not_found")
    response = put(owner_client, other.id, host="127.0.0.1", port=free_port(), username="x", password="y")
    assert_error(response, 404, "connection_not_found")
    assert not Mailbox.objects.exists()


def test_an_unknown_connection_is_not_found(owner_client):
    unknown = uuid.uuid4()
    assert_error(owner_client.get(url(unknown)), 404, "connection_not_found")
    assert_error(put(owner_client, unknown, host="127.0.0.1", username="x", password="y"), 404, "connection_not_found")
    assert_error(owner_client.delete(url(unknown)), 404, "connection_not_found")


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "../status"])
def test_a_path_that_is_not_a_uuid_is_a_json_404(owner_client, bad_id):
    for method in (owner_client.get, owner_client.put, owner_client.delete):
        response = method(url(bad_id))
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert "code" in response.json()


def test_without_a_token_it_is_401(connection):
    make_mailbox(connection)
    client = APIClient()
    assert client.get(url(connection.id)).status_code == 401
    assert put(client, connection.id, host="127.0.0.1", username="x", password="y").status_code == 401
    assert client.delete(url(connection.id)).status_code == 401
    assert Mailbox.objects.filter(connection=connection).exists()


# --- Secret store down ----------------------------------------------------------------------


@pytest.fixture
def broken_secret_store(settings, tmp_path):
    """A local store whose folder cannot be created (its parent is a file): even root cannot write."""

    def breaks():
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        settings.SECRETS_LOCAL_PATH = str(blocker / "secrets.json")

    return breaks


def test_secret_store_unavailable_saves_nothing(owner_client, connection, broken_secret_store):
    broken_secret_store()
    response = put(
        owner_client,
        connection.id,
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username="seller",
        password=STORED_PASSWORD,
    )
    body = assert_error(response, 503, "secret_store_unavailable")
    assert STORED_PASSWORD not in body["message"]
    assert not Mailbox.objects.exists()


def test_secret_store_unavailable_keeps_the_existing_settings(owner_client, connection, broken_secret_store):
    make_mailbox(connection, imap_host="imap.example.org")
    broken_secret_store()
    for body in (
        {"host": "127.0.0.1", "security": "none", "username": "new", "password": "New-Password-2"},
        {"host": "127.0.0.1", "security": "none", "username": "new"},  # the stored password cannot be read
    ):
        assert_error(put(owner_client, connection.id, **body), 503, "secret_store_unavailable")
        mailbox = Mailbox.objects.get(connection=connection)
        assert (mailbox.imap_host, mailbox.imap_username) == (
            "imap.example.org",
            "seller-" + connection.selling_partner_id.lower(),
        )
    # Nothing is deleted either: the seller retries later.
    assert_error(owner_client.delete(url(connection.id)), 503, "secret_store_unavailable")
    assert Mailbox.objects.filter(connection=connection).exists()


def test_openbao_unreachable_saves_nothing(owner_client, connection, vault_settings, settings):
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"
    settings.VAULT_TIMEOUT = 1.0
    response = put(
        owner_client,
        connection.id,
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username="seller",
        password=STORED_PASSWORD,
    )
    assert_error(response, 503, "secret_store_unavailable")
    assert not Mailbox.objects.exists()


def test_openbao_holds_the_password(owner_client, connection, vault_settings, mailbox_user):
    response = put(owner_client, connection.id, **imap_of(mailbox_user))
    assert response.status_code == 200, response.content
    assert response.json()["check"] == {"imap": {"ok": True}}
    path = Mailbox.objects.get(connection=connection).imap_secret_ref
    assert stored_password(path) == mailbox_user.password
    assert owner_client.delete(url(connection.id)).status_code == 204
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)


# --- New settings reset the polling state ----------------------------------------------------

CURSOR = "imap:v1;uidvalidity=4242;uid=17;since=2026-11-01"


@pytest.mark.parametrize(
    ("change", "cursor_kept"),
    [
        pytest.param({"port": 1143, "password": "Other-Password-3"}, True, id="port-and-password"),
        pytest.param({"security": "starttls"}, True, id="security"),
        pytest.param({"host": "localhost"}, False, id="host"),
        pytest.param({"username": "another-user"}, False, id="username"),
        pytest.param({"folder": "Amazon"}, False, id="folder"),
    ],
)
def test_new_settings_reset_the_backoff_and_a_moved_mailbox_its_cursor(owner_client, connection, change, cursor_kept):
    make_mailbox(connection, imap_host="127.0.0.1", imap_port=free_port(), imap_security="none", imap_username="seller")
    MarketplaceConnection.objects.filter(pk=connection.pk).update(
        poll_cursor=CURSOR,
        next_poll_at=timezone.now() + timedelta(hours=6),
        consecutive_failures=5,
        last_error="Fetch failed: Mailbox login refused",
    )
    body = {"host": "127.0.0.1", "port": free_port(), "security": "none", "username": "seller", "folder": "INBOX"}
    response = put(owner_client, connection.id, **{**body, **change})
    assert response.status_code == 200, response.content

    connection.refresh_from_db()
    assert connection.next_poll_at is None
    assert connection.consecutive_failures == 0
    assert connection.poll_cursor == (CURSOR if cursor_kept else "")


# --- Status ---------------------------------------------------------------------------------


def _status_mailbox(client, connection) -> dict:
    response = client.get(STATUS_URL)
    assert response.status_code == 200
    (item,) = [c for c in response.json()["connections"] if c["id"] == str(connection.id)]
    return item["mailbox"]


def test_status_without_mailbox(connection):
    agent = api_client(make_member(connection.tenant, role=Role.AGENT))
    assert _status_mailbox(agent, connection) == {
        "configured": False,
        "message": "no mailbox configured",
        "lastError": "",
        "lastErrorAt": None,
        "smtpConfigured": False,
        "smtpLastError": "",
        "smtpLastErrorAt": None,
    }


def test_status_without_mailbox_names_the_fallback_source(owner_client, connection, settings):
    settings.AMAZON_USE_MOCK = True
    state = _status_mailbox(owner_client, connection)
    assert state["configured"] is False
    assert state["message"].startswith("no mailbox configured") and "mock" in state["message"]


def test_status_shows_a_failed_check(connection, owner_client):
    response = put(
        owner_client,
        connection.id,
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username="seller",
        password=STORED_PASSWORD,
    )
    assert response.json()["check"]["imap"]["code"] == "mailbox_unreachable"
    agent = api_client(make_member(connection.tenant, role=Role.AGENT))
    state = _status_mailbox(agent, connection)
    assert state["configured"] is True
    assert state["lastError"] == response.json()["check"]["imap"]["message"]
    assert state["lastErrorAt"]
    assert "seller on 127.0.0.1" in state["message"] and "unreachable" in state["message"]
    assert STORED_PASSWORD not in json.dumps(state)


def test_status_shows_a_working_mailbox(owner_client, connection):
    make_mailbox(connection, imap_username="relay@acme.example", imap_host="imap.acme.example")
    assert _status_mailbox(owner_client, connection) == {
        "configured": True,
        "message": "relay@acme.example on imap.acme.example, folder INBOX",
        "lastError": "",
        "lastErrorAt": None,
        "smtpConfigured": False,
        "smtpLastError": "",
        "smtpLastErrorAt": None,
    }


def test_status_never_shows_another_tenants_mailbox(owner, owner_client, connection):
    other = make_connection(make_member().tenant)
    make_mailbox(other, imap_username="other-tenant-relay", imap_host="imap.other.example", last_error="boom")
    body = owner_client.get(STATUS_URL).json()
    assert [c["id"] for c in body["connections"]] == [str(connection.id)]
    assert body["connections"][0]["mailbox"]["configured"] is False
    text = json.dumps(body)
    assert "other-tenant-relay" not in text and "imap.other.example" not in text and "boom" not in text


def test_status_query_count_does_not_grow_with_mailboxes(owner, owner_client, django_assert_max_num_queries):
    connections = [make_connection(owner.tenant) for _ in range(5)]
    for i, connection in enumerate(connections):
        make_mailbox(connection, last_error=f"error {i}" if i % 2 else "")
    # Authentication (membership) + one query for the connections with their counts and mailboxes.
    with django_assert_max_num_queries(2):
        body = owner_client.get(STATUS_URL).json()
    assert len(body["connections"]) == 5
    assert all(c["mailbox"]["configured"] for c in body["connections"])
    assert sorted(c["mailbox"]["lastError"] for c in body["connections"]) == ["", "", "", "error 1", "error 3"]


# --- Disconnect -----------------------------------------------------------------------------


def test_disconnect_removes_the_mailbox_and_its_password(owner_client, connection):
    mailbox = make_mailbox(connection)
    path = mailbox.imap_secret_ref
    response = owner_client.post(DISCONNECT_URL, {"sellingPartnerId": connection.selling_partner_id}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["connections"][0]["mailbox"]["configured"] is False
    assert not Mailbox.objects.filter(connection=connection).exists()
    with pytest.raises(SecretNotFound):
        get_secret_store().read(path)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.DISCONNECTED
    assert_error(owner_client.get(url(connection.id)), 404, "mailbox_not_configured")


# --- The poller -----------------------------------------------------------------------------


def test_a_refused_login_waits_the_longest_backoff_until_new_settings_fix_it(
    owner_client, connection, mailbox_user, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    mailbox_user.server.append(mailbox_user.username, relay_mail(1))
    _, saved = mailbox_connect(mailbox_user, connection)
    assert saved.check.ok
    # The seller changed the password at the provider: the stored one is now wrong.
    wrong = "Outdated-Password-9"
    get_secret_store().write(saved.mailbox.imap_secret_ref, {"password": wrong})

    before = timezone.now()
    code, summary = poll()
    assert code == 1 and summary["failures"] == 1 and summary["new_messages"] == 0

    connection.refresh_from_db()
    mailbox = Mailbox.objects.get(connection=connection)
    assert "login refused" in connection.last_error and mailbox_user.username in connection.last_error
    assert mailbox.last_error_code == "mailbox_auth_failed"
    assert mailbox.last_error and mailbox.last_error_at is not None
    assert connection.consecutive_failures == 1
    assert connection.next_poll_at >= before + timedelta(seconds=settings.AMAZON_POLL_BACKOFF_MAX_SECONDS)
    assert not TicketMessage.objects.exists()

    got = owner_client.get(url(connection.id)).json()["check"]["imap"]
    assert (got["ok"], got["code"]) == (False, "mailbox_auth_failed")
    assert owner_client.get(STATUS_URL).json()["connections"][0]["mailbox"]["lastError"] == mailbox.last_error

    # Not retried at the next run…
    assert poll()[1]["connections"] == 0
    # …but at once after the seller enters the right password.
    response = put(owner_client, connection.id, **imap_of(mailbox_user))
    assert response.json()["check"] == {"imap": {"ok": True}}
    code, summary = poll()
    assert code == 0, summary
    assert (summary["connections"], summary["new_messages"], summary["failures"]) == (1, 1, 0)

    connection.refresh_from_db()
    mailbox.refresh_from_db()
    assert (connection.last_error, connection.consecutive_failures) == ("", 0)
    assert (mailbox.last_error, mailbox.last_error_code, mailbox.last_error_at) == ("", "", None)
    assert owner_client.get(url(connection.id)).json()["check"] == {"imap": {"ok": True}}
    assert TicketMessage.objects.filter(ticket__connection_id=connection.id).count() == 1
    for secret in (wrong, mailbox_user.password):
        assert secret not in log_text(caplog)
