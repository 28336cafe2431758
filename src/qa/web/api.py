"""The `search` API of the app (``POST /gradio_api/call/search``), with inputs checked."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from qa.errors import QAError
from qa.records import result_to_dict
from qa.search.modes import MODES
from qa.web.present import clip_question
from qa.web.service import AnswerService


def search_api(service: AnswerService) -> Any:
    """The `search` API: the same JSON object as `qa search --json`, inputs checked and named when wrong.

    With a language model (``--llm``), the object holds its checked answer too, as the CLI's does.
    """

    def search(question: str, k: int = 5, mode: str = "hybrid") -> dict[str, Any]:
        """The same JSON object as `qa search --json`."""
        # Gradio passes the JSON values as they came, whatever the type hints say.
        if question is not None and not isinstance(question, str):
            raise gr.Error(f"the question must be a string, not {_json_type(question)}")
        text, _ = clip_question(question or "")
        if not text:
            raise gr.Error("the question is empty")
        passages = search_k(k)
        if not isinstance(mode, str) or mode not in MODES:
            raise gr.Error(f"unknown mode {_shown(mode)}: use one of {', '.join(MODES)}")
        try:
            result = service.ask(text, k=passages, mode=mode)
            writing = service.writing(result, stream=False)
            return result_to_dict(writing.result() if writing is not None else result)
        except QAError as error:
            raise gr.Error(str(error)) from error

    return search


def search_k(k: object) -> int:
    """The `search` API's ``k``: a whole number of passages, at least 1 (``3.0`` is 3).

    Raises:
        gr.Error: ``k`` is of another type, fractional or below 1.
    """
    if isinstance(k, bool) or not isinstance(k, int | float):
        shown = "" if k is None else f" {_shown(k)}"
        raise gr.Error(f"k must be a whole number of passages, not {_json_type(k)}{shown}")
    if isinstance(k, float) and not (math.isfinite(k) and k.is_integer()):
        raise gr.Error(f"k must be a whole number of passages, not {_shown(k)}")
    if k < 1:
        raise gr.Error(f"k must be at least 1, not {_shown(k)}")
    return int(k)


def _json_type(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    """A value as a message shows it: its repr, clipped (a list may be huge)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
