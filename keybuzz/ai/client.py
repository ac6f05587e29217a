"""The client of KeyBuzz's LiteLLM gateway: OpenAI-compatible chat completions over HTTP.

Configuration (keybuzz/settings.py, docs/configuration.md):
- `KEYBUZZ_AI_BASE_URL`: the gateway's base URL, as an OpenAI SDK's `base_url` (`http://litellm:4000`
  or `http://litellm:4000/v1`: LiteLLM answers both); requests go to `{base}/chat/completions`.
  Empty: AI is not configured (`AiNotConfigured`).
- `KEYBUZZ_AI_MODEL`: the model name the gateway routes (a LiteLLM `model_name`).
- the key: `KEYBUZZ_AI_API_KEY` when set, else the secret store's `keybuzz/ai/litellm` (`api_key`).
  Read once per `KEY_CACHE_SECONDS` per process: the store is a network call away.
- `KEYBUZZ_AI_TIMEOUT_SECONDS`: the budget of one logical call, retries and waits included, so that
  an agent's request cannot outlive gunicorn's timeout however the gateway behaves.

Every request sends `user=<tenant id>`: LiteLLM's spend tracking per end user.

Retries: at most `max_retries` more attempts, on 429, 500, 502, 503, 504 and connection failures,
after a full-jitter backoff, or after the gateway's Retry-After when it fits under `RETRY_AFTER_CAP`
and the time left. A read timeout is not retried: the model is slow, and a second prompt would pay
twice for the same slowness (and the time budget would be gone anyway).

Errors, each with a `code` and a message that is safe to log and to show (never the key, the prompt,
nor the gateway's own error text, which may quote either):
- AiNotConfigured (`ai_not_configured`): no base URL, or no key anywhere.
- AiUnavailable (`ai_unavailable`): down, 5xx or 429 after the retries, a refused key, a rejected
  request, a body that is not a chat completion; AiRefused (the model refused: `finish_reason`
  "content_filter" or a `refusal`) and AiMalformed (an answer without usable content) are kinds of it.
- AiTimeout (`ai_timeout`): no answer within the time budget.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

import keybuzz
from keybuzz.http_retry import full_jitter, retry_after_seconds
from keybuzz.secrets import SecretNotFound, SecretStoreError, get_secret_store

logger = logging.getLogger("keybuzz.ai")

USER_AGENT = f"KeyBuzz/{keybuzz.__version__}"
SECRET_PATH = "keybuzz/ai/litellm"
KEY_CACHE_SECONDS = 300.0
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 30.0
MAX_RETRIES = 2
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 4.0
# A Retry-After above this is not waited for: the agent is waiting for the answer.
RETRY_AFTER_CAP = 10.0
# Connecting takes at most this long (within the budget): a gateway that does not accept the
# connection quickly is down, and the rest of the budget is better spent on a retry.
CONNECT_TIMEOUT = 5.0


# --- Errors ---------------------------------------------------------------------------------------


class AiError(Exception):
    """A call to the gateway failed. `str()` is safe to log and to show; `code` is for machines."""

    code = "ai_error"


class AiNotConfigured(AiError):
    code = "ai_not_configured"


class AiUnavailable(AiError):
    """The gateway could not give a usable answer. `status` is its HTTP status when it answered."""

    code = "ai_unavailable"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AiRefused(AiUnavailable):
    """The model (or the gateway's guardrails) refused to answer."""

    code = "ai_refused"


class AiMalformed(AiUnavailable):
    """A 2xx answer without usable content (also: the content is not what was asked for)."""

    code = "ai_malformed"


class AiTimeout(AiError):
    code = "ai_timeout"


# --- Requests and results -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str = field(repr=False)  # never in a repr, hence never in a traceback's locals dump


@dataclass(frozen=True)
class ChatResult:
    text: str = field(repr=False)
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: int
    attempts: int = 1


class AiGateway(Protocol):
    """What the helpdesk asks of a gateway; `HttpAiGateway` is the real one, tests and the local
    drafter (tickets.ai_local) are others. `user` is the tenant id; `purpose` names the call in logs."""

    model: str

    def complete(
        self,
        *,
        messages: Sequence[ChatMessage],
        user: str,
        purpose: str,
        max_tokens: int = 1024,
        temperature: float = 0.3,
        json_answer: bool = False,
    ) -> ChatResult: ...


# --- Configuration --------------------------------------------------------------------------------


def ai_base_url() -> str:
    return str(getattr(settings, "KEYBUZZ_AI_BASE_URL", "") or "").strip().rstrip("/")


def ai_configured() -> bool:
    """Whether a gateway is configured at all (its key is looked up only when it is called)."""
    return bool(ai_base_url())


_key_lock = threading.Lock()
_key_cache: tuple[str, float] | None = None  # (key, monotonic expiry)


def _api_key() -> str:
    global _key_cache
    from_env = str(getattr(settings, "KEYBUZZ_AI_API_KEY", "") or "").strip()
    if from_env:
        return from_env
    with _key_lock:
        if _key_cache is not None and time.monotonic() < _key_cache[1]:
            return _key_cache[0]
        try:
            data = get_secret_store().read(SECRET_PATH)
        except SecretNotFound:
            raise AiNotConfigured(
                f"No key for the AI gateway: set KEYBUZZ_AI_API_KEY or the secret {SECRET_PATH}"
            ) from None
        except (SecretStoreError, ValueError) as exc:
            # The store's messages are safe to log (keybuzz.secrets); they hold no secret.
            raise AiUnavailable(f"The AI gateway's key could not be read: {exc}") from None
        key = data.get("api_key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise AiNotConfigured(f"No key for the AI gateway: the secret {SECRET_PATH} has no api_key")
        _key_cache = (key.strip(), time.monotonic() + KEY_CACHE_SECONDS)
        return _key_cache[0]


@receiver(setting_changed)
def _forget_key(*, setting: str, **kwargs: Any) -> None:
    global _key_cache
    if setting.startswith(("KEYBUZZ_AI_", "SECRETS_", "VAULT_")):
        _key_cache = None


def ai_gateway() -> HttpAiGateway:
    """The configured gateway; AiNotConfigured without a base URL or a key."""
    base_url = ai_base_url()
    if not base_url:
        raise AiNotConfigured("No AI gateway is configured (KEYBUZZ_AI_BASE_URL)")
    return HttpAiGateway(
        base_url=base_url,
        api_key=_api_key(),
        model=str(getattr(settings, "KEYBUZZ_AI_MODEL", "") or DEFAULT_MODEL),
        timeout=float(getattr(settings, "KEYBUZZ_AI_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)),
    )


# --- Client ---------------------------------------------------------------------------------------


def _safe_code(body: Any) -> str:
    """The OpenAI error body's `code` or `type`, if it is a short identifier: never its `message`,
    which may quote the request (or, for a refused key, the key)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    for name in ("code", "type"):
        value = error.get(name)
        if isinstance(value, str | int) and str(value).replace("_", "").isalnum() and len(str(value)) <= 40:
            return str(value)
    return ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class HttpAiGateway:
    """One `requests.Session` per client, KeyBuzz's User-Agent, the key as a Bearer token."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = MAX_RETRIES,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model = model
        self.timeout = max(0.1, timeout)
        self.max_retries = max(0, max_retries)
        self._sleep = sleep or time.sleep
        self._clock = clock
        self.session = requests.Session()
        self.session.headers.update(
            {"User-Agent": USER_AGENT, "Accept": "application/json", "Authorization": f"Bearer {api_key}"}
        )

    def __repr__(self) -> str:  # the session's headers hold the key: never in a repr
        return f"HttpAiGateway(url={self.url!r}, model={self.model!r})"

    def complete(
        self,
        *,
        messages: Sequence[ChatMessage],
        user: str,
        purpose: str,
        max_tokens: int = 1024,
        temperature: float = 0.3,
        json_answer: bool = False,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "user": user,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if json_answer:
            body["response_format"] = {"type": "json_object"}
        started = self._clock()
        deadline = started + self.timeout
        attempt = 0
        while True:
            attempt += 1
            left = deadline - self._clock()
            if left <= 0:
                raise AiTimeout(f"The AI gateway did not answer within {self.timeout:g}s")
            failure: AiUnavailable
            wait_hint: float | None = None
            try:
                response = self.session.post(self.url, json=body, timeout=(min(CONNECT_TIMEOUT, left), left))
            except requests.exceptions.ConnectTimeout:
                failure = AiUnavailable("The AI gateway could not be reached (connection timed out)")
            except requests.exceptions.Timeout:
                raise AiTimeout(f"The AI gateway did not answer within {self.timeout:g}s") from None
            except requests.exceptions.ConnectionError:
                failure = AiUnavailable("The AI gateway could not be reached")
            except requests.exceptions.RequestException as exc:
                raise AiUnavailable(f"The AI gateway call failed ({type(exc).__name__})") from None
            else:
                if response.status_code == 200:
                    return self._result(response, started=started, attempts=attempt)
                failure = self._failure(response)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise failure
                wait_hint = retry_after_seconds(response)
            if attempt > self.max_retries:
                raise failure
            wait = full_jitter(attempt - 1, base=BACKOFF_BASE, cap=BACKOFF_CAP)
            if wait_hint is not None:
                if wait_hint > RETRY_AFTER_CAP:
                    raise failure
                wait = wait_hint
            if self._clock() + wait >= deadline:
                raise failure  # no time left for another attempt: the last failure is the answer
            logger.info("AI gateway %s: attempt %d failed (%s), retrying in %.2fs", purpose, attempt, failure, wait)
            self._sleep(wait)

    def _failure(self, response: requests.Response) -> AiUnavailable:
        status = response.status_code
        try:
            code = _safe_code(response.json())
        except ValueError:
            code = ""
        suffix = f" ({code})" if code else ""
        if status == 429:
            return AiUnavailable(f"The AI gateway is rate limiting KeyBuzz (429{suffix})", status=status)
        if status in (401, 403):
            return AiUnavailable(
                f"The AI gateway refused KeyBuzz's key ({status}{suffix}): check KEYBUZZ_AI_API_KEY", status=status
            )
        if status >= 500:
            return AiUnavailable(f"The AI gateway failed ({status}{suffix})", status=status)
        return AiUnavailable(f"The AI gateway rejected the request ({status}{suffix})", status=status)

    def _result(self, response: requests.Response, *, started: float, attempts: int) -> ChatResult:
        try:
            body = response.json()
        except ValueError:
            raise AiMalformed("The AI gateway's answer is not JSON", status=200) from None
        choices = body.get("choices") if isinstance(body, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(choice, dict) or not isinstance(message, dict):
            raise AiMalformed("The AI gateway's answer is not a chat completion (no choices)", status=200)
        finish_reason = choice.get("finish_reason")
        finish_reason = finish_reason if isinstance(finish_reason, str) else ""
        if finish_reason == "content_filter" or message.get("refusal"):
            raise AiRefused("The AI model declined to answer this request (content filter or refusal)", status=200)
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise AiMalformed("The AI gateway's answer has no text", status=200)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        model = body.get("model")
        return ChatResult(
            text=content,
            model=model if isinstance(model, str) and model else self.model,
            finish_reason=finish_reason,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            total_tokens=_int(usage.get("total_tokens")),
            latency_ms=int((self._clock() - started) * 1000),
            attempts=attempts,
        )


def json_object(text: str) -> dict[str, Any]:
    """The JSON object a model was asked to answer with, read defensively: a Markdown code fence
    around it is tolerated (models add one despite `response_format`); anything else is AiMalformed."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.split("\n", 1)[1] if "\n" in cleaned else ""
        cleaned = cleaned.rsplit("```", 1)[0]
    try:
        value = json.loads(cleaned)
    except (ValueError, RecursionError):
        raise AiMalformed("The AI model's answer is not the JSON object asked for") from None
    if not isinstance(value, dict):
        raise AiMalformed("The AI model's answer is not the JSON object asked for")
    return value
