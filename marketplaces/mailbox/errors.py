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


# --- Sending (marketplaces.mailbox.smtp) ---------------------------------------------------------------
# One family under MailboxError, so a caller may catch them all at once. `retryable` says what the
# sender does with the reply: True, send it again later; False, stop and show the error (and never
# resend blindly after SmtpUncertain: the buyer may already have the mail).


class SmtpError(MailboxError):
    """A reply could not be sent by SMTP; `retryable` says whether sending it again later may work."""

    code = "smtp_error"
    retryable = False


class SmtpAuthError(SmtpError):
    """The mail server refused the login (535/534/530), or offers no AUTH while credentials are set."""

    code = "smtp_auth_failed"
    retryable = False


class SmtpUnreachable(SmtpError):
    """No server to talk to: unknown host, refused, lost or timed out, always before the message ended."""

    code = "smtp_unreachable"
    retryable = True


class SmtpTlsError(SmtpError):
    """TLS failed: an untrusted certificate, no STARTTLS, a failed handshake (retried: certificates get renewed)."""

    code = "smtp_tls_error"
    retryable = True


class SmtpTemporaryError(SmtpError):
    """The mail server answered 4xx (try again later) before accepting the message."""

    code = "smtp_temporary"
    retryable = True


class SmtpRejected(SmtpError):
    """The mail server answered 5xx to the sender, the recipient or the message: sending it again will not help."""

    code = "smtp_rejected"
    retryable = False


class SmtpUncertain(SmtpError):
    """The whole message went out but the verdict never came: it may have been accepted; never resend blindly."""

    code = "smtp_uncertain"
    retryable = False
