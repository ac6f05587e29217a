"""Real mail servers for the tests, on 127.0.0.1 only, on ports chosen at run time.

- `tls`: a throwaway certificate authority and server certificates (IP 127.0.0.1, DNS localhost), so
  clients verify TLS for real against `ca_path` instead of turning verification off.
- `dovecot`: Debian's Dovecot 2.3 (apt: dovecot-imapd) started from a generated config with a
  passwd-file user per file, Maildirs in a throwaway directory, plain/STARTTLS and implicit-TLS
  listeners; helpers to file mail (one message over IMAP, or thousands straight into the Maildir),
  read flags and counts, and force a new UIDVALIDITY.
- `smtp`: an aiosmtpd sink in a background thread with AUTH PLAIN/LOGIN, STARTTLS or implicit TLS,
  that records every accepted message byte for byte and fails on demand (4xx/5xx at MAIL, RCPT or DATA).
- `fixtures`: pytest fixtures over the three; load them with
  `pytest_plugins = ["tests.mail_servers.fixtures"]` in the top-level conftest.

Nothing here is a system service: each server lives as long as its fixture and leaves nothing behind.
"""
