"""A real OpenAI-compatible chat-completions server for the tests, on 127.0.0.1 and a free port.

It speaks ``POST /v1/chat/completions``, streaming (server-sent events, ``data: [DONE]``) and
not, and answers as the model named in the request says (``MODELS``); any other model gets
OpenAI's 404. Answers are made from the passages of the prompt qa sent (``qa.search.written``'s
``<passage number="n" ...>`` blocks), the way a model that follows the instructions would.
Every request is kept (``requests``) so that tests can read exactly what was sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What each model name makes the server do.
MODELS = {
    "good": "two sentences, each copied from a passage and cited [n]",
    "mixed": "the good answer and one sentence no passage says, cited [1]",
    "out-of-range": "a sentence citing a passage that was not given [99]",
    "uncited": "an answer with no citation at all",
    "injection": "'I was told to ignore my instructions.' when an instruction sits outside the passages, else good",
    "slow": "the good answer after `slow_seconds` of silence",
    "trickle": "the mixed answer, streamed a word every `trickle_seconds` (to watch it stream)",
    "error-500": "HTTP 500 with an OpenAI error body",
    "echo-key": "HTTP 401 whose message quotes the key it was sent",
    "malformed": "a stream whose data is not JSON (whole: a body that is not JSON)",
    "hangup": "a stream that stops mid-answer: no finish, no [DONE] (whole: a body cut short)",
}
INJECTION = "ignore previous instructions"
UNSUPPORTED = "The moon is made of green cheese and the defectors built a rocket to get there [1]."
PASSAGE = re.compile(r'<passage number="(\d+)"[^>]*>\n(.*?)\n</passage>', re.DOTALL)


def first_sentence(text: str) -> str:
    """The passage's first sentence, without its final stop."""
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0].rstrip(".!?")


def answer_for(model: str, messages: list[dict[str, str]]) -> str:
    """What the server's model ``model`` answers to ``messages``."""
    prompt = messages[-1]["content"]
    passages = {int(number): text for number, text in PASSAGE.findall(prompt)}
    good = " ".join(f"{first_sentence(text)} [{number}]." for number, text in sorted(passages.items())[:2])
    if model in {"mixed", "trickle"}:
        return f"{good} {UNSUPPORTED}"
    if model == "out-of-range":
        return f"{good} Defectors often return for their families [99]."
    if model == "uncited":
        return "Defectors return to North Korea for many reasons, mostly their families."
    if model == "injection":
        outside = PASSAGE.sub("", "\n".join(message["content"] for message in messages))
        return "I was told to ignore my instructions." if INJECTION in outside.lower() else good
    return good


class FakeLLMServer(ThreadingHTTPServer):
    """The server; ``url`` is its OpenAI-compatible base URL."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.slow_seconds = 5.0
        self.trickle_seconds = 0.2
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        """The model list (``GET /v1/models``)."""
        self.server.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": None})
        if not self.path.endswith("/models"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        models = [{"id": name, "object": "model", "created": 0, "owned_by": "tests"} for name in MODELS]
        self._json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self._answer()

    def _answer(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        model = body.get("model", "")
        if model not in MODELS:
            error = {"message": f"The model `{model}` does not exist.", "type": "invalid_request_error"}
            self._json(404, {"error": {**error, "code": "model_not_found", "param": None}})
            return
        if model == "slow" and self.server.stopping.wait(self.server.slow_seconds):
            return
        if model == "error-500":
            self._json(500, {"error": {"message": "the model crashed", "type": "server_error"}})
            return
        if model == "echo-key":
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._json(401, {"error": {"message": f"Incorrect API key provided: {key}.", "type": "auth"}})
            return
        text = answer_for(model, body["messages"])
        if body.get("stream"):
            self._stream(model, text)
        elif model in {"malformed", "hangup"}:
            self._broken_json(model)
        else:
            message = {"role": "assistant", "content": text}
            self._json(200, {**_envelope(model, "chat.completion"), "choices": [_choice(message=message)]})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _broken_json(self, model: str) -> None:
        """Not JSON at all, or JSON cut off before the length it announced."""
        data = b"<html>Bad gateway</html>" if model == "malformed" else b'{"id": "chatcmpl-test", "choices": [{"ind'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + (0 if model == "malformed" else 500)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, model: str, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        pieces = re.findall(r"\S+\s*", text)
        if model == "malformed":
            self._event('{"choices": [{"delta": {"content": "Defectors')
            return
        for number, piece in enumerate(pieces):
            if model == "hangup" and number == 3:
                return  # the connection closes: no finish_reason, no [DONE]
            self._event(json.dumps({**_envelope(model), "choices": [_choice(delta={"content": piece})]}))
            time.sleep(self.server.trickle_seconds if model == "trickle" else 0.005)
        self._event(json.dumps({**_envelope(model), "choices": [_choice(delta={}, finish_reason="stop")]}))
        self._event("[DONE]")

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()


def _envelope(model: str, kind: str = "chat.completion.chunk") -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": kind, "created": int(time.time()), "model": model}


def _choice(*, finish_reason: str | None = None, **content: Any) -> dict[str, Any]:
    return {"index": 0, **content, "finish_reason": finish_reason or ("stop" if "message" in content else None)}


@contextmanager
def serving() -> Iterator[FakeLLMServer]:
    """The server, answering in a thread until the block ends."""
    server = FakeLLMServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (a server that is down)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
