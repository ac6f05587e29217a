from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from keybuzz.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (or update its name) and its owner account. Idempotent; prints the tenant id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short identifier, e.g. acme-store")
        parser.add_argument("--name", required=True, help="Display name of the seller company")
        parser.add_argument("--admin-username", help="Owner account to create or attach to the tenant")
        parser.add_argument("--admin-password", help="Password for a new owner account (updated if it differs)")
        parser.add_argument("--admin-email", default="")

    def handle(
        self,
        *args: Any,
        slug: str,
        name: str,
        admin_username: str | None,
        admin_password: str | None,
        admin_email: str,
        **options: Any,
    ) -> None:
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(f"Invalid slug {slug!r}: use letters, digits, '-' and '_' only") from None
        if admin_password and not admin_username:
            raise CommandError("--admin-password needs --admin-username")
        result = tenant_create(
            slug=slug, name=name, admin_username=admin_username, admin_password=admin_password, admin_email=admin_email
        )
        self.stdout.write(str(result.tenant.id))
