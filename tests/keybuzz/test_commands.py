from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from keybuzz.models import Membership, Tenant

pytestmark = pytest.mark.django_db
User = get_user_model()


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue().strip()


def test_create_tenant_is_idempotent_and_prints_the_id():
    first = run("create_tenant", "acme", "--name", "Acme", "--admin-username", "alice", "--admin-password", "pw-1-abc")
    second = run(
        "create_tenant", "acme", "--name", "Acme Store", "--admin-username", "alice", "--admin-password", "pw-1-abc"
    )
    tenant = Tenant.objects.get()
    assert first == second == str(tenant.id)
    assert tenant.name == "Acme Store"
    membership = Membership.objects.get()
    assert (membership.user.username, membership.role) == ("alice", "owner")
    assert membership.user.check_password("pw-1-abc")


def test_create_tenant_rejects_a_bad_slug():
    with pytest.raises(CommandError, match="Invalid slug"):
        run("create_tenant", "not a slug", "--name", "X")
    assert not Tenant.objects.exists()


def test_ensure_superadmin_creates_then_updates_without_printing_the_password(settings):
    settings.KEYBUZZ_SUPERADMIN_PASSWORD = "first-Secret-pw"
    assert run("ensure_superadmin") == "Superadmin 'superadmin' created."
    settings.KEYBUZZ_SUPERADMIN_PASSWORD = "second-Secret-pw"
    settings.KEYBUZZ_SUPERADMIN_EMAIL = "ops@example.com"
    output = run("ensure_superadmin")
    assert output == "Superadmin 'superadmin' updated."
    user = User.objects.get()
    assert user.is_superuser and user.is_staff and user.email == "ops@example.com"
    assert user.check_password("second-Secret-pw")
    assert "Secret-pw" not in output


def test_ensure_superadmin_without_password_says_what_to_set(settings):
    settings.KEYBUZZ_SUPERADMIN_PASSWORD = ""
    with pytest.raises(CommandError, match="KEYBUZZ_SUPERADMIN_PASSWORD is not set"):
        run("ensure_superadmin")
    assert not User.objects.exists()
