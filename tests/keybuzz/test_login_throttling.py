"""Failed logins are limited per account and per client address (django-axes, in the database),
on the API's token endpoint and on the admin's login page; a superadmin unlocks in the admin."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, make_member

pytestmark = pytest.mark.django_db
TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.TRUSTED_PROXY_COUNT = 0
    return settings


def login(client, username: str, password: str, **extra):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def test_an_account_is_locked_after_the_limit_even_for_the_right_password(limit):
    member = make_member()
    client = APIClient()
    answers = [login(client, member.user.username, "wrong-password").status_code for _ in range(3)]
    assert answers == [401, 401, 429]

    locked = login(client, member.user.username, PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_attempts"
    assert int(locked["Retry-After"]) == int(limit.AXES_COOLOFF_TIME.total_seconds())
    assert locked["Cache-Control"] == "no-store"
    # Another account from another address is not affected.
    other = make_member()
    assert login(APIClient(), other.user.username, PASSWORD, REMOTE_ADDR="10.0.0.9").status_code == 200


def test_a_client_address_is_locked_whatever_the_accounts_it_tries():
    members = [make_member() for _ in range(4)]
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    for member in members[:3]:
        login(client, member.user.username, "wrong-password")
    assert login(client, members[3].user.username, PASSWORD).status_code == 429
    assert login(APIClient(REMOTE_ADDR="198.51.100.8"), members[3].user.username, PASSWORD).status_code == 200


def test_behind_the_proxy_the_address_is_the_one_nginx_saw(limit):
    limit.TRUSTED_PROXY_COUNT = 1
    member = make_member()
    other = make_member()
    spoofer = APIClient(REMOTE_ADDR="127.0.0.1")
    for n in range(3):  # the client forges a new first hop each time; nginx appends the real one
        login(spoofer, f"nobody-{n}", "x", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.5")
    assert login(spoofer, member.user.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    assert login(spoofer, other.user.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 200


def test_a_success_before_the_limit_starts_the_count_again():
    member = make_member()
    client = APIClient()
    for _ in range(2):
        login(client, member.user.username, "wrong-password")
    assert login(client, member.user.username, PASSWORD).status_code == 200
    assert [login(client, member.user.username, "wrong").status_code for _ in range(2)] == [401, 401]


def test_the_admin_login_is_throttled_too_and_a_superadmin_unlocks(limit):
    User = get_user_model()
    User.objects.create_superuser("root", "root@example.com", "pw-superadmin-123")
    staff_browser = Client()
    for _ in range(3):
        page = staff_browser.post("/admin/login/", {"username": "root", "password": "nope"})
    assert page.status_code == 429 and "Retry-After" in page
    assert staff_browser.post("/admin/login/", {"username": "root", "password": "pw-superadmin-123"}).status_code == 429

    # Another superadmin, from another address, unlocks the account in the admin.
    rescuer = User.objects.create_superuser("rescuer", "r@example.com", "pw-rescuer-123")
    admin = Client()
    admin.force_login(rescuer)
    attempts = admin.get("/admin/axes/accessattempt/")
    assert attempts.status_code == 200 and "root" in attempts.content.decode()
    ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    admin.post("/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert not AccessAttempt.objects.exists()
    assert staff_browser.post("/admin/login/", {"username": "root", "password": "pw-superadmin-123"}).status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "", "192.0.2.1"),
        (0, "203.0.113.5", "192.0.2.1"),  # no proxy in front: a client's header proves nothing
        (1, "203.0.113.5", "203.0.113.5"),  # nginx appended the address it saw
        (1, "10.9.9.9, 203.0.113.5", "203.0.113.5"),  # the client's own first entry is ignored
        (2, "10.9.9.9, 203.0.113.5, 198.51.100.1", "203.0.113.5"),
        (1, "", "192.0.2.1"),  # reached without the proxy (a health check on the loopback)
    ],
)
def test_client_address_trusts_only_the_proxies_in_front(settings, proxies, forwarded, expected):
    from django.test import RequestFactory

    from keybuzz.throttling import client_address

    settings.TRUSTED_PROXY_COUNT = proxies
    meta = {"REMOTE_ADDR": "192.0.2.1", **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    assert client_address(RequestFactory().get("/", **meta)) == expected
