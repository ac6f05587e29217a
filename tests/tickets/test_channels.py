"""The channel registry: tickets know channels by name; each channel app says where its replies go."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from marketplaces.amazon.replies import NO_AMAZON_SENDER, AmazonReplyChannel, MockAmazonChannel
from tickets import channels
from tickets.channels import (
    ChannelNotConfiguredError,
    SendResult,
    channel_adapter,
    channel_register,
    channel_reply_guidelines,
    channel_reply_violations,
)


class Recorder:
    name = "recorder"

    def send_reply(self, ticket, message) -> SendResult:
        return SendResult(external_id="r-1")


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so a test's registrations end with it."""
    monkeypatch.setattr(channels, "_factories", dict(channels._factories))
    monkeypatch.setattr(channels, "_reply_rules", dict(channels._reply_rules))
    monkeypatch.setattr(channels, "_reply_guidelines", dict(channels._reply_guidelines))


def test_a_channel_nobody_registered_refuses_replies_with_a_reason(registry):
    adapter = channel_adapter("EBAY")
    with pytest.raises(ChannelNotConfiguredError, match="No sender for channel 'EBAY'"):
        adapter.send_reply(None, None)


def test_a_registered_factory_is_asked_each_time(registry):
    made = []
    channel_register("EBAY", lambda: made.append(1) or Recorder())
    assert channel_adapter("EBAY").send_reply(None, None).external_id == "r-1"
    channel_adapter("EBAY")
    assert made == [1, 1]  # configuration changes apply at the next run, without a restart


def test_a_channel_says_its_rules_in_words_for_the_ai_drafter(registry):
    assert "No e-mail addresses" in channel_reply_guidelines("AMAZON")  # the marketplaces app's
    channel_register("EBAY", Recorder)
    assert channel_reply_guidelines("EBAY") == ""
    channel_register("EBAY", Recorder, reply_guidelines="- Be brief.")
    assert channel_reply_guidelines("EBAY") == "- Be brief."


def test_the_amazon_channel_is_registered_by_the_marketplaces_app(settings):
    # Connections with SMTP settings send by e-mail; the others through the configured fallback.
    settings.AMAZON_USE_MOCK = True
    adapter = channel_adapter("AMAZON")
    assert isinstance(adapter, AmazonReplyChannel)
    assert isinstance(adapter.fallback, MockAmazonChannel)
    settings.AMAZON_USE_MOCK = False
    settings.TICKETS_AMAZON_ADAPTER = ""
    with pytest.raises(ChannelNotConfiguredError) as caught:
        channel_adapter("AMAZON").fallback.send_reply(None, None)
    assert str(caught.value) == NO_AMAZON_SENDER
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_channels.Recorder"
    assert channel_adapter("AMAZON").fallback.name == "recorder"
    settings.TICKETS_AMAZON_ADAPTER = "tests.tickets.test_channels.Missing"
    with pytest.raises(ImproperlyConfigured, match=r"TICKETS_AMAZON_ADAPTER='tests\.tickets\.test_channels\.Missing'"):
        channel_adapter("AMAZON")


def test_the_amazon_content_rules_are_registered_with_the_channel():
    [violation] = channel_reply_violations("AMAZON", "Call us on +49 30 1234567, we are happy to help.")
    assert (violation.rule, violation.text) == ("phone_number", "+49 30 1234567")
    assert channel_reply_violations("EBAY-UNREGISTERED", "Call us on +49 30 1234567") == []
