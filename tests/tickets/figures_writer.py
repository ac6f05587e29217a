"""One writer of the concurrency test (tests/tickets/test_message_figures.py), in its own process:

    python -m tests.tickets.figures_writer DIRECTORY SEED TICKET_ID [TICKET_ID …]

Once Django is up it creates DIRECTORY/ready-SEED and waits for DIRECTORY/go, so that the writers
start together (Django's start-up alone takes a second or two, longer than their work).

Files messages on those tickets, in short transactions that stay open a few ms after the insert
(so that the writers' transactions overlap), a third through the agents' service and the rest as plain
inserts (an admin, a script: writers that do not lock the ticket first); deletes some of its notes
and fails some of its replies. Prints what it left: {"messages": n, "notes": n, "failed": n}.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path


def main(directory: Path, seed: int, ticket_ids: list[int]) -> dict[str, int]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keybuzz.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone

    from tickets import services
    from tickets.models import DeliveryStatus, Direction, Ticket, TicketMessage
    from tickets.services import MessageKind

    rng = random.Random(seed)
    author = User.objects.get(username="figures-writer")
    (directory / f"ready-{seed}").touch()
    deadline = time.monotonic() + 120
    while not (directory / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = {"messages": 0, "notes": 0, "failed": 0}
    for step in range(60):
        ticket = Ticket.objects.get(pk=rng.choice(ticket_ids))
        with transaction.atomic():
            if step % 3 == 0:
                services.ticket_message_create(
                    tenant=ticket.tenant, ticket_id=ticket.pk, author=author, body=f"Note {seed}-{step}",
                    kind=MessageKind.NOTE,
                )  # fmt: skip
                left["notes"] += 1
            else:
                TicketMessage.objects.create(
                    tenant_id=ticket.tenant_id, ticket=ticket, direction=Direction.OUTBOUND, body=f"Reply {seed}-{step}",
                    sent_at=timezone.now(), delivery_status=DeliveryStatus.SENT, author_name=f"writer {seed}",
                )  # fmt: skip
                left["messages"] += 1
            time.sleep(rng.uniform(0.005, 0.03))
        if step % 10 == 9:
            with transaction.atomic():
                mine = TicketMessage.objects.filter(ticket_id__in=ticket_ids, body__startswith=f"Note {seed}-")
                TicketMessage.objects.filter(pk=mine.order_by("pk").values_list("pk", flat=True)[:1]).delete()
                left["notes"] -= 1
                time.sleep(rng.uniform(0.005, 0.03))
            with transaction.atomic():
                sent = TicketMessage.objects.filter(
                    ticket_id__in=ticket_ids, body__startswith=f"Reply {seed}-", delivery_status=DeliveryStatus.SENT
                )
                TicketMessage.objects.filter(pk=sent.order_by("pk").values_list("pk", flat=True)[:1]).update(
                    delivery_status=DeliveryStatus.FAILED
                )
                left["failed"] += 1
                time.sleep(rng.uniform(0.005, 0.03))
    return left


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), [int(arg) for arg in sys.argv[3:]])))
