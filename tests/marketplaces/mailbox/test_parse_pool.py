"""Relay mails parsed in worker processes: the same results as in the poller's thread, in order, and a
pool whose process died is replaced without losing the batch."""

from __future__ import annotations

import os
import signal

import pytest

from marketplaces.mailbox import parse_pool
from marketplaces.mailbox.relay import RelayMail, UnreadableMail
from tests.marketplaces.mailbox.helpers import corpus_mail, manifest


def _summary(outcome: RelayMail | UnreadableMail) -> tuple[str, str, str]:
    if isinstance(outcome, UnreadableMail):
        return ("unreadable", str(outcome), "")
    return (outcome.kind, outcome.message_id, outcome.text)


@pytest.fixture
def corpus() -> list[bytes]:
    return [corpus_mail(name) for name in manifest()]


def test_the_pool_gives_the_same_outcomes_in_the_same_order(settings, corpus):
    settings.AMAZON_MAILBOX_PARSE_PROCESSES = 0
    in_thread = [_summary(o) for o in parse_pool.parse_all(corpus)]
    settings.AMAZON_MAILBOX_PARSE_PROCESSES = 2
    pooled = [_summary(o) for o in parse_pool.parse_all(corpus)]

    assert pooled == in_thread
    assert [kind for kind, _, _ in pooled] == [
        "unreadable" if e["kind"] == "unreadable" else e["kind"] for e in manifest().values()
    ]


def test_a_dead_parsing_process_costs_nothing_but_a_new_pool(settings, corpus, caplog):
    settings.AMAZON_MAILBOX_PARSE_PROCESSES = 2
    expected = [_summary(o) for o in parse_pool.parse_all(corpus)]
    pool = parse_pool._pool
    assert pool is not None
    for pid in list(pool._processes):  # what the kernel's OOM killer would do
        os.kill(pid, signal.SIGKILL)

    assert [_summary(o) for o in parse_pool.parse_all(corpus)] == expected  # parsed in the thread instead
    assert "Mail parsing process died" in caplog.text
    assert [_summary(o) for o in parse_pool.parse_all(corpus)] == expected  # and a new pool next time
    assert parse_pool._pool is not None and parse_pool._pool is not pool
