"""The LiteLLM gateway's client against a local OpenAI-compatible server (tests.ai_fake): the request
it sends, the typed result, retries, and one narrow error per failure, none carrying the key."""

from __future__ import annotations

import logging

import pytest

from keybuzz.ai import client as ai
from keybuzz.ai.client import (
    AiMalformed,
    AiNotConfigured,
    AiRefused,
    AiTimeout,
    AiUnavailable,
    ChatMessage,
    json_object,
)
from keybuzz.secrets import get_secret_store
from tests.ai_fake import Reply, answer, error, overloaded, rate_limited, server_error
from tests.conftest import AI_TEST_KEY
from tests.net import free_port

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello")]


def call(**kwargs):
    return ai.ai_gateway().complete(messages=MESSAGES, user="tenant-42", purpose="test", **kwargs)


def test_a_chat_completion_request_and_its_typed_result(ai_gateway):
    ai_gateway.push(answer("Hi there"))
    result = call(max_tokens=64, json_answer=True)

    sent = ai_gateway.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {AI_TEST_KEY}"
    assert sent.headers["User-Agent"].startswith("KeyBuzz/")
    assert sent.body["model"] == "keybuzz-test-model"
    assert sent.body["user"] == "tenant-42"
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert sent.body["max_tokens"] == 64
    assert sent.body["response_format"] == {"type": "json_object"}

    assert result.text == "Hi there"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (812, 96, 908)
    assert result.finish_reason == "stop"
    assert result.latency_ms >= 0 and result.attempts == 1
    assert "Hi there" not in repr(result)  # the text stays out of reprs (tracebacks, logs)


def test_no_response_format_unless_json_is_asked_for(ai_gateway):
    call()
    assert "response_format" not in ai_gateway.last.body


def test_a_base_url_with_a_trailing_slash(ai_gateway, settings):
    settings.KEYBUZZ_AI_BASE_URL = ai_gateway.base_url + "/"
    call()
    assert ai_gateway.last.path == "/v1/chat/completions"


def test_429_is_retried_after_retry_after_then_succeeds(ai_gateway):
    ai_gateway.push(rate_limited("0"), answer("ok"))
    result = call()
    assert result.text == "ok" and result.attempts == 2
    assert len(ai_gateway.requests) == 2


def test_429_until_the_retries_run_out(ai_gateway):
    ai_gateway.push(rate_limited("0"), rate_limited("0"), rate_limited("0"), rate_limited("0"))
    with pytest.raises(AiUnavailable) as caught:
        call()
    assert caught.value.status == 429 and "rate_limit_exceeded" in str(caught.value)
    assert len(ai_gateway.requests) == 1 + ai.MAX_RETRIES


def test_a_retry_after_too_long_to_wait_is_not_waited_for(ai_gateway):
    ai_gateway.push(rate_limited("120"))
    with pytest.raises(AiUnavailable):
        call()
    assert len(ai_gateway.requests) == 1


@pytest.mark.parametrize("failure", [server_error, overloaded])
def test_5xx_is_retried_a_bounded_number_of_times(ai_gateway, failure):
    ai_gateway.push(*(failure() for _ in range(5)))
    with pytest.raises(AiUnavailable) as caught:
        call()
    assert caught.value.status in (500, 503)
    assert len(ai_gateway.requests) == 1 + ai.MAX_RETRIES


def test_a_5xx_then_an_answer(ai_gateway):
    ai_gateway.push(overloaded(), answer("fine"))
    assert call().text == "fine"


def test_a_refused_key_is_not_retried_and_never_quoted(ai_gateway):
    # OpenAI's 401 quotes (part of) the key: its message must not reach ours.
    ai_gateway.push(
        error(401, f"Incorrect API key provided: {AI_TEST_KEY}.", type_="invalid_request_error", code="invalid_api_key")
    )
    with pytest.raises(AiUnavailable) as caught:
        call()
    assert len(ai_gateway.requests) == 1
    assert AI_TEST_KEY not in str(caught.value) and "invalid_api_key" in str(caught.value)


def test_a_rejected_request_is_not_retried(ai_gateway):
    ai_gateway.push(
        error(400, "This model's maximum context length is 128000 tokens.", type_="invalid_request_error", code=None)
    )
    with pytest.raises(AiUnavailable, match="rejected the request"):
        call()
    assert len(ai_gateway.requests) == 1


def test_a_slow_answer_is_a_timeout(ai_gateway, settings):
    settings.KEYBUZZ_AI_TIMEOUT_SECONDS = 0.5
    ai_gateway.push(Reply(body=answer("late").body, delay=2.0))
    with pytest.raises(AiTimeout):
        call()
    assert len(ai_gateway.requests) == 1  # a slow model is not asked twice


def test_a_gateway_that_is_down(settings):
    settings.KEYBUZZ_AI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.KEYBUZZ_AI_API_KEY = AI_TEST_KEY
    with pytest.raises(AiUnavailable, match="could not be reached"):
        call()


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body="<html>Bad gateway</html>"),
        Reply(body={"object": "chat.completion", "choices": []}),
        Reply(body={"choices": [{"index": 0, "finish_reason": "stop"}]}),
        answer(""),
        Reply(body={"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]}),
    ],
)
def test_an_answer_without_usable_content_is_malformed(ai_gateway, reply):
    ai_gateway.push(reply)
    with pytest.raises(AiMalformed):
        call()


def test_a_content_filter_stop_is_a_refusal(ai_gateway):
    ai_gateway.push(Reply(body=answer("", finish_reason="content_filter").body))
    with pytest.raises(AiRefused):
        call()


def test_a_refusal_field_is_a_refusal(ai_gateway):
    ai_gateway.push(Reply(body=answer("", refusal="I'm sorry, I can't help with that.").body))
    with pytest.raises(AiRefused):
        call()


def test_not_configured_without_a_base_url(settings):
    settings.KEYBUZZ_AI_BASE_URL = ""
    with pytest.raises(AiNotConfigured):
        ai.ai_gateway()


def test_the_key_from_the_secret_store_when_the_environment_has_none(ai_gateway, settings):
    settings.KEYBUZZ_AI_API_KEY = ""
    get_secret_store().write(ai.SECRET_PATH, {"api_key": "sk-from-the-store-0123456789"})
    call()
    assert ai_gateway.last.headers["Authorization"] == "Bearer sk-from-the-store-0123456789"


def test_no_key_anywhere_is_not_configured(ai_gateway, settings):
    settings.KEYBUZZ_AI_API_KEY = ""  # the gateway is up and named: the key is what is missing
    with pytest.raises(AiNotConfigured, match="keybuzz/ai/litellm"):
        ai.ai_gateway()


def test_the_key_is_not_in_the_clients_repr(ai_gateway):
    assert AI_TEST_KEY not in repr(ai_gateway_client := ai.ai_gateway())
    assert ai_gateway_client.url.endswith("/chat/completions")


def test_retries_log_no_key_nor_prompt(ai_gateway, caplog):
    ai_gateway.push(server_error(), answer("ok"))
    with caplog.at_level(logging.DEBUG):
        ai_gateway_client = ai.ai_gateway()
        ai_gateway_client.complete(
            messages=[ChatMessage("user", "secret buyer words")], user="t", purpose="test", json_answer=False
        )
    assert "retrying" in caplog.text
    assert AI_TEST_KEY not in caplog.text and "secret buyer words" not in caplog.text


def test_the_log_filter_masks_a_gateway_key():
    from keybuzz.logging import redact

    assert AI_TEST_KEY not in redact(f"calling with {AI_TEST_KEY}")
    assert "sk-[redacted]" in redact(f"key {AI_TEST_KEY}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('  {"a": "x"}\n', {"a": "x"}),
    ],
)
def test_json_object_reads_what_models_answer(text, expected):
    assert json_object(text) == expected


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '"a string"', "```\nnope\n```", "[" * 5000])
def test_json_object_refuses_anything_else(text):
    with pytest.raises(AiMalformed):
        json_object(text)
