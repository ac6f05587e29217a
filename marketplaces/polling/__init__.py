"""The Amazon poller (`manage.py poll_amazon`), in the order a run goes through it:

- `claim`: lease due connections to this worker (several workers on several hosts share them);
- `parse`: turn each raw message of the source into a `ParsedMessage`, or a reason to quarantine it;
- `filing`: in one transaction, store the new messages, file them as tickets through
  `tickets.ingest` (the one door from a channel into tickets), quarantine the unreadable ones and
  advance the connection's cursor;
- `connection`: poll one connection (token, fetch with no transaction open, file) and record its
  failure with a backoff;
- `run`: one run over every due connection, `AMAZON_POLL_WORKERS` at a time;
- `records`: the run's figures for the operators (PollRun, PollCounter).

Where messages come from is `marketplaces.sources`: the poller knows only `MessageSource`.
"""

from marketplaces.polling.run import LOG, PollerConfigurationError, PollSummary, poll_run

__all__ = ["LOG", "PollSummary", "PollerConfigurationError", "poll_run"]
