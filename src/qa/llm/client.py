"""A chat model behind an OpenAI-compatible server (Ollama, llama.cpp, vLLM, LM Studio, an API).

``llm_config`` reads the settings (``--llm URL``, ``--llm-model NAME``, ``$QA_LLM_URL``,
``$QA_LLM_MODEL``; the key only from ``$QA_LLM_API_KEY``); ``ChatModel`` sends one
conversation and gives the answer, streamed as text deltas or whole. Every failure
(nothing listening, a timeout, an HTTP error, a stream that is malformed or stops
early, an unknown model) becomes an ``LLMError`` with one line that never holds the key.
"""

from __future__ import annotations

import math
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qa.errors import LLMError, LLMResponseError, LLMUnavailableError

if TYPE_CHECKING:
    import openai

URL_VARIABLE = "QA_LLM_URL"
MODEL_VARIABLE = "QA_LLM_MODEL"
KEY_VARIABLE = "QA_LLM_API_KEY"
TIMEOUT_VARIABLE = "QA_LLM_TIMEOUT"
# Seconds the server may stay silent: before it starts answering, and between two pieces of a stream.
DEFAULT_TIMEOUT = 60.0
# Sent when no key is set: local servers want none, and the client library insists on one.
NO_KEY = "no-key"
# Seconds the start-up check waits for the server (less than the timeout: it only asks whether anything answers).
CHECK_SECONDS = 5.0
# Characters of a server's own error message a failure quotes.
DETAIL_CHARS = 200
INSTALL_FIX = 'install the llm extra: pip install -e ".[llm]" (or pip install openai)'


@dataclass(frozen=True)
class LLMConfig:
    """Where the model is: the server's OpenAI-compatible base URL, the model's name, the key, the timeout."""

    url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def shown_url(self) -> str:
        """The URL as messages show it: without any user name or password in it."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def llm_config(url: str | None, model: str | None, environ: Mapping[str, str]) -> LLMConfig | None:
    """The model asked for by the options, else the environment; ``None`` when none is.

    The timeout comes from ``$QA_LLM_TIMEOUT`` (seconds; default ``DEFAULT_TIMEOUT``).

    Raises:
        QAError: A URL without a model name (or the reverse), or a URL that is not http(s).
    """
    url = (url or environ.get(URL_VARIABLE, "")).strip()
    model = (model or environ.get(MODEL_VARIABLE, "")).strip()
    if not url and not model:
        return None
    if not url:
        raise LLMError(
            "--llm-model needs the model's server too",
            fix=f"give --llm URL (or ${URL_VARIABLE}), e.g. http://localhost:11434/v1 for Ollama",
        )
    if not model:
        raise LLMError(
            "--llm needs the model's name too",
            fix=f"give --llm-model NAME (or ${MODEL_VARIABLE}), e.g. llama3.2 (Ollama: `ollama list` shows them)",
        )
    timeout = _seconds(environ.get(TIMEOUT_VARIABLE, ""))
    return LLMConfig(base_url(url), model, api_key=environ.get(KEY_VARIABLE, "").strip(), timeout=timeout)


def _seconds(text: str) -> float:
    """``$QA_LLM_TIMEOUT``: seconds above 0; ``DEFAULT_TIMEOUT`` when unset."""
    if not text.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise LLMError(f"${TIMEOUT_VARIABLE} is {text!r}, not a number of seconds above 0", fix="e.g. 120")
    return seconds


def base_url(url: str) -> str:
    """The server's OpenAI-compatible base URL from what a user types.

    ``http://localhost:8080`` gets ``/v1``; a full ``.../v1/chat/completions`` loses the endpoint;
    any other path (``/api/v1``, ``/openai/v1``) is the server's own and stays.

    Raises:
        LLMError: ``url`` is not an http(s) address.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise LLMError(
            f"--llm {url!r} is not an http(s) address",
            fix="give the server's OpenAI-compatible address, e.g. http://localhost:11434/v1 (Ollama)",
        )
    path = parts.path.rstrip("/")
    path = path.removesuffix("/chat/completions")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path or "/v1", parts.query, ""))


Message = Mapping[str, str]
"""One message of a conversation: ``{"role": "system" | "user" | "assistant", "content": ...}``."""


class ChatModel:
    """A chat model at an OpenAI-compatible server; safe to share between threads.

    Raises:
        LLMError: The ``openai`` package (the ``llm`` extra) is not installed.
    """

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.name = config.model
        self._openai = _import_openai()
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The answer to the conversation, piece by piece as the server streams it.

        Raises:
            LLMError: The server failed, or the stream was malformed or stopped before the answer ended.
        """
        finished = False
        try:
            with self._connected().chat.completions.create(
                model=self.config.model, messages=_messages(messages), stream=True, temperature=0
            ) as chunks:
                for chunk in chunks:
                    for choice in chunk.choices or ():
                        text = choice.delta.content if choice.delta is not None else None
                        if text:
                            yield text
                        finished = finished or bool(choice.finish_reason)
        except self._openai.OpenAIError as error:
            raise self._failure(error) from error
        except (ValueError, AttributeError, TypeError) as error:  # data that is not a chunk
            raise self._malformed() from error
        if not finished:
            raise LLMResponseError(
                f"the answer from the language model at {self.config.shown_url} stopped before its end "
                "(the server closed the stream)"
            )

    def complete(self, messages: Sequence[Message]) -> str:
        """The whole answer to the conversation, in one response (no streaming).

        Raises:
            LLMError: The server failed, or answered with something that is not a chat completion.
        """
        try:
            response = self._connected().chat.completions.create(
                model=self.config.model, messages=_messages(messages), stream=False, temperature=0
            )
            text = response.choices[0].message.content
        except self._openai.OpenAIError as error:
            raise self._failure(error) from error
        except (ValueError, AttributeError, TypeError, IndexError) as error:
            raise self._malformed() from error
        if not isinstance(text, str):
            raise self._malformed()
        return text

    def unreachable(self) -> str:
        """Why nothing answers at the server's address now, in one line; ``""`` when something does.

        Any answer counts, even an error (a server without a model list, a refused key): the
        first question says what is wrong then. Asks for the model list, waiting at most
        ``CHECK_SECONDS``.
        """
        client = self._connected().with_options(timeout=min(self.config.timeout, CHECK_SECONDS))
        try:
            client.models.list()
        except self._openai.APIConnectionError as error:
            return str(self._connection_failure(error))
        except (self._openai.OpenAIError, ValueError, AttributeError, TypeError):
            return ""
        return ""

    def _connected(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = _client(self._openai, self.config)
            return self._client

    def _malformed(self) -> LLMResponseError:
        return LLMResponseError(
            f"the language model server at {self.config.shown_url} sent something that is not a chat-completions "
            "answer",
            fix="check that --llm is an OpenAI-compatible address (it usually ends in /v1)",
        )

    def _failure(self, error: Exception) -> LLMError:
        """One line for what went wrong, in this tool's words, the server's own words quoted, never the key."""
        if isinstance(error, self._openai.APIConnectionError):
            return self._connection_failure(error)
        where = self.config.shown_url
        detail = self._detail(error)
        api = self._openai
        if isinstance(error, api.NotFoundError):
            return LLMResponseError(
                f"the server at {where} does not know the model {self.config.model!r} (HTTP 404{detail})",
                fix="check --llm-model (Ollama: `ollama list`) and that --llm is the server's /v1 address",
            )
        if isinstance(error, api.AuthenticationError | api.PermissionDeniedError):
            return LLMResponseError(
                f"the language model server at {where} refused the request (HTTP {error.status_code}{detail})",
                fix=f"set ${KEY_VARIABLE} to a key it accepts",
            )
        if isinstance(error, api.APIStatusError):
            return LLMResponseError(f"the language model server at {where} answered HTTP {error.status_code}{detail}")
        return LLMResponseError(f"the language model server at {where} failed{detail}")

    def _connection_failure(self, error: Exception) -> LLMError:
        """No answer in time, nobody listening, or a connection that broke while the answer came."""
        where = self.config.shown_url
        if isinstance(error, self._openai.APITimeoutError):
            return LLMUnavailableError(
                f"the language model at {where} did not answer within {self.config.timeout:g} s",
                fix="try again, or a smaller or faster model",
            )
        if type(error.__cause__).__name__ in {"NoneType", "ConnectError"}:
            return LLMUnavailableError(
                f"cannot reach the language model server at {where}", fix="start the server, or check --llm"
            )
        return LLMResponseError(
            f"the connection to the language model server at {where} broke before its answer was complete"
        )

    def _detail(self, error: Exception) -> str:
        """``: the server's message``, on one line, clipped, the key blanked out; ``""`` without one."""
        body = getattr(error, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            message = getattr(error, "message", "") or ""
        text = " ".join(str(message).split())
        if self.config.api_key:
            text = text.replace(self.config.api_key, "***")
        if len(text) > DETAIL_CHARS:
            text = text[: DETAIL_CHARS - 1] + "…"
        return f": {text}" if text else ""


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as error:
        raise LLMError("--llm needs the openai package, which is not installed", fix=INSTALL_FIX) from error
    return openai


def _client(api: Any, config: LLMConfig) -> openai.OpenAI:
    """A client that sends only what qa means to: none of the library's own ``$OPENAI_*`` settings."""
    client: openai.OpenAI = api.OpenAI(
        base_url=config.url,
        api_key=config.api_key or NO_KEY,
        organization=None,
        timeout=config.timeout,
        max_retries=0,  # a retry would make a down or slow server cost several timeouts
    )
    # The library fills these from $OPENAI_ORG_ID, $OPENAI_PROJECT_ID and $OPENAI_ADMIN_KEY.
    client.organization = None
    client.project = None
    client.admin_api_key = None
    return client


def _messages(messages: Sequence[Message]) -> Any:
    """The conversation as the client library takes it (typed dicts of role and content)."""
    return [{"role": message["role"], "content": message["content"]} for message in messages]
