"""Run in a process of its own against DATABASE_URL (the fault tests' private cluster):

python -m tests.faults.seed N                  # N CONNECTED Amazon connections
python -m tests.faults.seed --check N PER      # exit 1 unless each has its PER messages, filed once
"""

from __future__ import annotations

import os
import sys

import django


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keybuzz.settings")
    django.setup()
    from django.db.models import Count

    from marketplaces.models import ExternalMessage, MarketplaceConnection
    from tests.marketplaces.test_poller_processes import make_connections
    from tickets.models import TicketMessage

    if sys.argv[1] != "--check":
        make_connections(int(sys.argv[1]))
        return 0
    connections, per_connection = int(sys.argv[2]), int(sys.argv[3])
    per = set(ExternalMessage.objects.values("connection").annotate(n=Count("id")).values_list("n", flat=True))
    problems = []
    if MarketplaceConnection.objects.count() != connections or per != {per_connection}:
        problems.append(f"messages per connection: {sorted(per)}")
    if TicketMessage.objects.count() != connections * per_connection:
        problems.append(f"ticket messages: {TicketMessage.objects.count()}")
    if TicketMessage.objects.values("external_message_id").annotate(n=Count("id")).filter(n__gt=1).exists():
        problems.append("a message filed twice")
    print("; ".join(problems) or "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
