from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keybuzz.errors import ApplicationError
from keybuzz.services import superadmin_ensure


class Command(BaseCommand):
    help = (
        "Create or update the superadmin from KEYBUZZ_SUPERADMIN_PASSWORD "
        "(and KEYBUZZ_SUPERADMIN_USERNAME / KEYBUZZ_SUPERADMIN_EMAIL). Idempotent."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = settings.KEYBUZZ_SUPERADMIN_USERNAME
        try:
            created = superadmin_ensure(
                username=username,
                email=settings.KEYBUZZ_SUPERADMIN_EMAIL,
                password=settings.KEYBUZZ_SUPERADMIN_PASSWORD,
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.message}; set it in the environment or the env file") from None
        self.stdout.write(f"Superadmin {username!r} {'created' if created else 'updated'}.")
