"""The seller's Amazon relay mailbox: where buyers' messages arrive (Amazon forwards them by e-mail;
SP-API cannot read them). One module per concern:

- `relay`: one raw mail → a classified record (buyer message, Seller Central copy, delivery failure,
  Amazon notification, or mail to ignore) with the buyer's words extracted; pure, no I/O;
- `imap`: the IMAP client (imapclient): connect with TLS, log in, read a folder by UID, never write;
- `passwords`: the mailbox passwords in the secret store (the only code that touches them).

The poller reads a mailbox through `marketplaces.sources.imap.ImapSource`.
"""
