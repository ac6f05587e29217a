"""The mailbox errors: one narrow family, each with a message safe to show a seller and to log (it
names the host and the user, never the password) and a machine-readable `code`."""

from __future__ import annotations


class MailboxError(Exception):
    """The mailbox could not be read; `str()` is safe to show and to log, `code` is for machines."""

    code = "mailbox_error"


class MailboxAuthError(MailboxError):
    """The server refused the login: wrong user or password, or IMAP access disabled."""

    code = "mailbox_auth_failed"


class MailboxUnreachable(MailboxError):
    """No answer: wrong host or port, the server down, a firewall, a timeout."""

    code = "mailbox_unreachable"


class MailboxTlsError(MailboxError):
    """The TLS handshake failed: a certificate that does not verify, or no TLS on that port."""

    code = "mailbox_tls_error"


class MailboxFolderMissing(MailboxError):
    """The folder does not exist (or the user may not open it)."""

    code = "mailbox_folder_missing"


class MailboxProtocolError(MailboxError):
    """The server answered something else than expected."""

    code = "mailbox_protocol_error"


class MailboxHostRefused(MailboxError):
    """The host is on a loopback or private network, which only the operator may allow."""

    code = "mailbox_host_not_allowed"
