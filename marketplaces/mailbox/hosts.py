"""Which mail servers KeyBuzz may connect to for a seller.

A seller types the host name, so without a rule any tenant could make KeyBuzz's servers open
connections inside its own network (the database, the secret store, a cloud metadata address) and
learn from the error which ports answer. Hosts that resolve to a loopback, private, link-local or
otherwise non-public address are refused unless the operator allows them
(`AMAZON_MAILBOX_ALLOW_PRIVATE_HOSTS`: a mail server on the same host or network, and the tests).
Checked when the settings are saved and again before every connection (a name may resolve
differently later).
"""

from __future__ import annotations

import ipaddress
import socket

from marketplaces.mailbox.errors import MailboxHostRefused, MailboxUnreachable

LOCALHOST_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain"})


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Loopback by its very name or address (no DNS: what the name resolves to may change)."""
    address = _literal(host)
    return host.lower() in LOCALHOST_NAMES if address is None else address.is_loopback


def host_check(host: str, port: int, *, allow_private: bool) -> None:
    """Raises MailboxHostRefused for a non-public address (unless allowed), MailboxUnreachable
    when the name does not resolve."""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise MailboxUnreachable(f"Mailbox host {host} not found") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise MailboxHostRefused(
                f"Mailbox host {host} is on a loopback or private network ({address}): use the provider's public "
                "IMAP host, or ask the operator to allow private hosts"
            )
