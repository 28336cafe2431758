"""``qa search --llm``: the user's language model from the options, its answer streamed to the terminal, checked.

The model writes after the extractive answer is printed (``qa.search.written``); what the
check found follows it, and a failure is one ``qa: warning:`` line on stderr.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from qa.cli.output import format_answer, say, tell
from qa.llm.client import ChatModel, llm_config
from qa.records import SearchResult
from qa.safe_text import terminal_text

if TYPE_CHECKING:
    from qa.embed.encoder import Encoder
    from qa.index.store import PassageStore
    from qa.search.evidence import SentenceMemory
    from qa.search.written import Writing


def chat_model(url: str | None, name: str | None) -> ChatModel | None:
    """The language model asked for (``--llm``, ``--llm-model``, ``$QA_LLM_*``), else none."""
    config = llm_config(url, name, os.environ)
    return ChatModel(config) if config is not None else None


def writer(
    model: ChatModel, store: PassageStore, encoder: Encoder, sentences: SentenceMemory, history: Sequence[str]
) -> Callable[..., Writing]:
    """``write(result, stream=...)``: the model's answer to a result, checked against ``store``'s sentences."""
    from qa.search.written import start_writing

    def write(result: SearchResult, *, stream: bool) -> Writing:
        return start_writing(
            result, model=model, store=store, encoder=encoder, sentences=sentences, history=history, stream=stream
        )

    return write


def written(writing: Writing, where: str = "") -> SearchResult:
    """The result with its checked written answer; why there is none, if there is none, on stderr."""
    result = writing.result()
    if result.written is not None and result.written.notice:
        tell(f"qa: warning: {where}{result.written.notice}")
    return result


def stream_written(writing: Writing) -> None:
    """The model's answer printed as it comes, then what the check found (or, on stderr, why there is none)."""
    printed = False
    for piece in writing:
        if not printed:
            print(f"\nWritten by {writing.model_name} (citations checked below):\n", flush=True)
            printed = True
        print(terminal_text(piece), end="", flush=True)
    if printed:
        print(flush=True)
    checked = written(writing).written
    if checked is None or not checked.sentences:
        return
    if checked.notice:
        say("(That written answer is not used: see the warning.)")
        return
    unsupported = [sentence for sentence in checked.sentences if sentence.problem]
    if not unsupported:
        say(f"\nCitations checked: all {len(checked.sentences)} sentences are supported by the passages they cite.")
        return
    say(f"\nCitations checked: not supported, {len(unsupported)} of {len(checked.sentences)} sentences:")
    for sentence in unsupported:
        say(format_answer(f"- {sentence.text} (unsupported: {sentence.problem})"))
