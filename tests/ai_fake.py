"""A local OpenAI-compatible gateway (LiteLLM speaks this wire format): a real HTTP server on a free
127.0.0.1 port, answering `POST /v1/chat/completions` the way OpenAI's API does.

- Answers are scripted (`fake.push(...)`, first in first out) or, with nothing scripted, a chat
  completion with `fake.default_content` (a draft), or a translation for a translation prompt.
- `completion(content, …)` builds a real chat.completion body (id, object, created, model, choices
  with message and finish_reason, usage); `error(status, …)` an OpenAI error body
  `{"error": {"message", "type", "param", "code"}}`; `Reply(delay=…)` answers late.
- Every request is recorded (`fake.requests`: path, headers, JSON body) for the tests to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.net import HOST

PATH = "/v1/chat/completions"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a dict (sent as JSON) or str/bytes (sent as is)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def prompt(self) -> str:
        """All the messages' contents, joined: what the model would read."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))

    def message(self, role: str) -> str:
        return "\n".join(str(m["content"]) for m in self.body["messages"] if m["role"] == role)


def completion(
    content: str | None,
    *,
    finish_reason: str = "stop",
    refusal: str | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 96, "total_tokens": 908},
        "system_fingerprint": "fp_test",
    }


def error(status: int, message: str, *, type_: str, code: str | None) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": type_, "param": None, "code": code}})


def rate_limited(retry_after: str = "0") -> Reply:
    reply = error(
        429,
        "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): Limit 200000.",
        type_="tokens",
        code="rate_limit_exceeded",
    )
    reply.headers["Retry-After"] = retry_after
    return reply


def server_error() -> Reply:
    return error(500, "The server had an error while processing your request.", type_="server_error", code=None)


def overloaded() -> Reply:
    return error(503, "The engine is currently overloaded, please try again later.", type_="server_error", code=None)


def answer(content: dict[str, Any] | str, **kwargs: Any) -> Reply:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return Reply(body=completion(text, **kwargs))


class FakeGateway:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self.default_content: dict[str, Any] = {"language": "en", "draft": "Thank you for your message."}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with fake._lock:
                    fake.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                    reply = fake.script.popleft() if fake.script else fake.default_reply(body)
                if self.path != PATH:
                    reply = error(404, f"Not found: {self.path}", type_="invalid_request_error", code="not_found")
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, str | bytes) else json.dumps(reply.body)
                data = payload.encode() if isinstance(payload, str) else payload
                try:
                    self.send_response(reply.status)
                    content_type = "application/json" if isinstance(reply.body, dict) else "text/plain"
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://{HOST}:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def default_reply(self, body: Any) -> Reply:
        """Unscripted: a translation for a translation prompt, else `default_content`."""
        messages = body.get("messages", []) if isinstance(body, dict) else []
        if any("<text to=" in str(m.get("content", "")) for m in messages if isinstance(m, dict)):
            return answer({"text": "Translated text."})
        return answer(self.default_content)

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
