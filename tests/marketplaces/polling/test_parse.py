"""marketplaces.polling.parse: each raw message parsed on its own, checked, or set aside with a reason."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from marketplaces.polling.parse import clean_json, parse_all, validated
from marketplaces.sources import MessageParseError, ParsedMessage
from marketplaces.sources.mock import MockAmazonSource
from tests.marketplaces.scripted_sources import raw_message

GOOD = ParsedMessage(external_id="m-1", thread_key="order:1", sent_at=datetime(2026, 11, 20, tzinfo=UTC), body="Hi")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"external_id": ""}, "external id is empty"),
        ({"external_id": "x" * 256}, "longer than 255"),
        ({"thread_key": ""}, "thread key is empty"),
        ({"sent_at": datetime(2026, 11, 20)}, "no time zone"),
        ({"sent_at": datetime(1999, 12, 31, tzinfo=UTC)}, "out of range"),
    ],
)
def test_validated_refuses_what_cannot_be_stored_or_trusted(change, reason):
    with pytest.raises(MessageParseError, match=reason):
        validated(replace(GOOD, **change))


def test_validated_refuses_a_future_date_beyond_a_day_and_accepts_clock_skew():
    assert validated(replace(GOOD, sent_at=timezone.now() + timedelta(hours=2))).external_id == "m-1"
    with pytest.raises(MessageParseError, match="out of range"):
        validated(replace(GOOD, sent_at=timezone.now() + timedelta(days=2)))


def test_parse_all_keeps_a_repeated_message_once_and_sets_the_bad_ones_aside():
    raws = [raw_message(1), raw_message(1), {"messageId": "m-2"}, raw_message(3, sentAt="soon")]
    batch = parse_all(MockAmazonSource(), raws)
    assert [parsed.external_id for _, parsed in batch.good] == ["msg-1"]
    assert [(raw.get("messageId"), reason) for raw, reason in batch.bad] == [
        ("m-2", "missing threadId, sentAt, body"),
        ("msg-3", "sentAt is not a date-time: 'soon'"),
    ]


def test_a_parser_crash_on_one_message_is_a_reason_not_a_crash():
    class Buggy(MockAmazonSource):
        def parse(self, raw):
            if raw["messageId"] == "msg-2":
                raise KeyError("amazonOrderId")
            return super().parse(raw)

    batch = parse_all(Buggy(), [raw_message(1), raw_message(2)])
    assert [parsed.external_id for _, parsed in batch.good] == ["msg-1"]
    assert batch.bad[0][1] == "parser failed: KeyError: 'amazonOrderId'"


def test_clean_json_drops_nul_and_for_the_quarantine_non_finite_numbers():
    raw = {"a\x00": ["x\x00y", {"n": float("nan")}], "ok": 1.5}
    assert clean_json(raw)["a"][0] == "xy"
    assert math.isnan(clean_json(raw)["a"][1]["n"])  # the main path keeps it (the database refuses it)
    assert clean_json(raw, for_quarantine=True) == {"a": ["xy", {"n": None}], "ok": 1.5}
