"""The Gradio app: a chat with the corpus, its sources and articles, and the corpus with a rebuild button.

Handlers only translate between widgets and ``AnswerService``; answering lives
in ``qa.search`` and all HTML in ``qa.web.present``. ``launch`` serves the app: behind
a login when given users, behind ``qa.web.guard`` always, and never serving a file from disk.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import ComponentProcessingError
from starlette.middleware import Middleware

from qa.errors import QAError
from qa.index.store import SearchFilter
from qa.records import result_to_dict
from qa.search.modes import MODES
from qa.web.auth import Credentials
from qa.web.guard import MAX_BODY_BYTES, RequestGuard, guard_policy
from qa.web.present import (
    CORPUS_COLUMNS,
    EMPTY_QUESTION_REPLY,
    article_html,
    as_markdown_text,
    chat_reply,
    clip_question,
    corpus_rows,
    parse_source_choice,
    source_choices,
    sources_html,
    status_markdown,
)
from qa.web.service import AnswerService

EXAMPLES = [
    "Why do defectors return to North Korea?",
    "How does North Korea use defectors' families to pressure them?",
    "What did Kim Yo Jong order officials to do?",
    "Who is Lim Ji-hyun?",
]
CSS = """
.qa-source { border-left: 3px solid #c7d2fe; padding: 4px 10px; margin: 10px 0; }
.qa-source-meta, .qa-article-meta, .qa-also { color: #555; font-size: 0.9em; }
.qa-highlight { background: #fef9c3; }
.qa-para-number { color: #888; font-size: 0.8em; margin-right: 4px; }
mark { background: #fde68a; }
"""
# Questions (chat and `search` API) answered at once; the rest wait in Gradio's queue.
# Measured by benchmarks/load.py on 2 cores: see README, "Many users at once".
ANSWER_CONCURRENCY = 2
SCROLL_TO_HIGHLIGHT = (
    "() => { document.querySelector('#qa-article .qa-highlight')?.scrollIntoView({block: 'center'}); }"
)


def launch(
    service: AnswerService,
    *,
    host: str,
    port: int,
    share: bool = False,
    credentials: Credentials | None = None,
    allowed_hosts: Sequence[str] = (),
    uploads: bool = False,
    block: bool = True,
) -> gr.Blocks:
    """Serve the app on ``host:port``; returns it once stopped (or at once, when not ``block``).

    Args:
        service: Answers the questions.
        host: Address to listen on; ``qa.web.auth.require_login_if_exposed`` says whether it needs a login.
        port: Port to listen on.
        share: Also open a public Gradio share link.
        credentials: ``(user, password)`` pairs; when given, every page, API call
            and file request needs a login first.
        allowed_hosts: Further host names the app answers to (a reverse
            proxy's public name); see ``qa.web.guard.guard_policy``.
        uploads: Open Gradio's upload routes (size-limited, behind the login);
            the app has no upload yet, so they are refused.
        block: Serve until interrupted; ``False`` returns while the server runs
            in the background (tests; stop it with ``close()``).
    """
    app = build_app(service)
    policy = guard_policy(
        host=host, port=port, share=share, login=bool(credentials), allowed_hosts=allowed_hosts, uploads=uploads
    )
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=credentials or None,
        auth_message="Log in to ask the articles." if credentials else None,
        css=CSS,
        # Every request passes RequestGuard first: the names answered, writes from other
        # sites, uploads, body size, slowed logins, security headers (qa.web.guard).
        app_kwargs={"middleware": [Middleware(RequestGuard, policy=policy)]},
        max_file_size=MAX_BODY_BYTES,
        # Python serves every request itself, so all of them pass the guard: no Node.js
        # front server ($GRADIO_SSR_MODE) and no static-file worker processes
        # ($GRADIO_NUM_WORKERS), which would serve files and uploads around it.
        ssr_mode=False,
        num_workers=0,
        # The app shows no files, so Gradio's file route serves none: without this it
        # would serve its cache folders and anything $GRADIO_ALLOWED_PATHS names, which
        # may hold the corpus or the index.
        blocked_paths=[os.path.abspath(os.sep)],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return app


class CheckedBlocks(gr.Blocks):
    """``gr.Blocks`` whose calls with missing or unusable input values say what was wrong.

    Gradio answers both with ``{"error": null}`` unless every error is shown
    (``show_error``), which would also show the text of unexpected exceptions.
    """

    async def preprocess_data(
        self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False
    ) -> list[Any]:
        """Gradio's preprocessing, with input problems raised as ``gr.Error`` (shown to the caller)."""
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(_arity_message(block_fn, len(inputs)))
        try:
            processed: list[Any] = await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except ComponentProcessingError as error:
            # Which input, what it expected and what it got; not the Python error underneath.
            raise gr.Error(str(error).split("\n\nOriginal error:", 1)[0]) from error
        except pydantic.ValidationError as error:  # a component's data model refused the value
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            name = block_fn.api_name or block_fn.name
            raise gr.Error(f"{name} got an input value it cannot take: {where or 'value'}: {first['msg']}") from error
        return processed


def _arity_message(block_fn: Any, given: int) -> str:
    """``search takes 3 values (question, k, mode), got 1``, from the handler's own parameters."""
    wanted = len(block_fn.inputs)
    name = block_fn.api_name or block_fn.name
    try:
        parameters = list(inspect.signature(block_fn.fn).parameters)
    except (TypeError, ValueError):
        parameters = []
    names = f" ({', '.join(parameters)})" if len(parameters) == wanted else ""
    return f"{name} takes {wanted} value{'s' if wanted != 1 else ''}{names}, got {given}"


def build_app(service: AnswerService) -> gr.Blocks:
    """The whole app; the caller launches it."""
    with CheckedBlocks(title="qa: ask the articles") as app:
        gr.Markdown("# Ask the articles")
        with gr.Tab("Ask"):
            ask_tab = _ask_tab(service)
        with gr.Tab("Corpus"):
            _corpus_tab(service, ask_tab)
        gr.api(  # type: ignore[attr-defined]
            _search_api(service),
            api_name="search",
            concurrency_id="answer",
            concurrency_limit=ANSWER_CONCURRENCY,
        )
    blocks: gr.Blocks = app
    return blocks


def _ask_tab(service: AnswerService) -> dict[str, Any]:
    history = gr.State([])
    with gr.Row():
        with gr.Column(scale=3):
            chat = gr.Chatbot(label="Conversation", height=460, elem_id="qa-chat", buttons=["copy"])
            question = gr.Textbox(
                placeholder="Ask a question about the articles", show_label=False, elem_id="qa-question"
            )
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="qa-ask")
                new = gr.Button("New conversation", elem_id="qa-new")
            with gr.Row():
                examples = [gr.Button(text, size="sm", elem_classes=["qa-example"]) for text in EXAMPLES]
        with gr.Column(scale=2):
            sources = gr.HTML(elem_id="qa-sources")
            article_choice = gr.Dropdown(label="Open a source's article", choices=[], elem_id="qa-article-choice")
            article = gr.HTML(elem_id="qa-article")
    settings = _settings(service)
    fields = {"question": question, "chat": chat, "history": history, **settings}
    outputs = [chat, history, sources, article_choice, article, question]
    respond = _responder(service, fields)
    inputs = set(fields.values())
    # Every way of asking shares one limit ("answer") with the `search` API.
    answering: dict[str, Any] = {
        "api_visibility": "private",
        "concurrency_id": "answer",
        "concurrency_limit": ANSWER_CONCURRENCY,
    }
    for trigger in (ask.click, question.submit):
        trigger(respond, inputs, outputs, **answering)
    for button in examples:
        # An example fills the question box, then is asked like a typed question.
        button.click(lambda text: text, button, question, api_visibility="private").then(
            respond, inputs, outputs, **answering
        )
    new.click(lambda: ([], [], "", gr.update(choices=[], value=None), ""), None, outputs[:5], api_visibility="private")
    article_choice.change(
        _article_opener(service), article_choice, article, api_name="article", api_visibility="private"
    ).then(None, js=SCROLL_TO_HIGHLIGHT)
    return {"documents": settings["documents"], "outlets": settings["outlets"]}


def _settings(service: AnswerService) -> dict[str, Any]:
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            k = gr.Slider(1, 20, value=5, step=1, label="Passages", elem_id="qa-k")
            mode = gr.Radio(list(MODES), value="hybrid", label="Retrieval", elem_id="qa-mode")
        with gr.Row():
            documents = gr.Dropdown(_document_choices(service), multiselect=True, label="Only these articles")
            outlets = gr.Dropdown(_outlet_choices(service), multiselect=True, label="Only these outlets")
        with gr.Row():
            date_from = gr.Textbox(label="From date", placeholder="YYYY-MM-DD")
            date_to = gr.Textbox(label="To date", placeholder="YYYY-MM-DD")
    return {"k": k, "mode": mode, "documents": documents, "outlets": outlets, "from": date_from, "to": date_to}


def _document_choices(service: AnswerService) -> list[tuple[str, str]]:
    return [(d.title or d.source, d.doc_id) for d, _ in service.documents()]


def _outlet_choices(service: AnswerService) -> list[str]:
    return sorted({d.outlet for d, _ in service.documents() if d.outlet})


def _responder(service: AnswerService, fields: dict[str, Any]) -> Any:
    """The chat handler; Gradio passes it every field's value in one dict keyed by component."""

    def respond(values: dict[Any, Any]) -> tuple[Any, ...]:
        value = {name: values[component] for name, component in fields.items()}
        chat, history = value["chat"] or [], value["history"] or []
        text, notice = clip_question(value["question"] or "")
        if not text:
            return [*chat, _assistant(EMPTY_QUESTION_REPLY)], history, gr.skip(), gr.skip(), gr.skip(), ""
        turn = [*chat, {"role": "user", "content": as_markdown_text(text)}]
        try:
            where = SearchFilter.of(
                doc_ids=value["documents"] or (),
                outlets=value["outlets"] or (),
                date_from=value["from"] or "",
                date_to=value["to"] or "",
            )
            result = service.ask(text, history=history, k=int(value["k"]), mode=value["mode"], where=where)
        except QAError as error:
            return [*turn, _assistant(as_markdown_text(str(error)))], history, gr.skip(), gr.skip(), gr.skip(), ""
        return (
            [*turn, _assistant(chat_reply(result, notice))],
            [*history, text],
            sources_html(result),
            gr.update(choices=source_choices(result), value=None),
            "",
            "",
        )

    return respond


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _article_opener(service: AnswerService) -> Any:
    def open_article(choice: str | None) -> str:
        if not choice:
            return ""
        doc_id, paragraph = parse_source_choice(choice)
        document = service.document(doc_id)
        return article_html(document, paragraph) if document else "<p>That article is no longer in the index.</p>"

    return open_article


def _corpus_tab(service: AnswerService, ask_tab: dict[str, Any]) -> None:
    status = gr.Markdown(_status(service), elem_id="qa-status")
    table = gr.Dataframe(
        value=corpus_rows(service.documents()), headers=CORPUS_COLUMNS, interactive=False, elem_id="qa-corpus"
    )
    rebuild = gr.Button("Rebuild index", elem_id="qa-rebuild")
    message = gr.Markdown(start_notice(service), elem_id="qa-rebuild-message")
    rebuild.click(
        rebuilder(service),
        None,
        [status, table, message, ask_tab["documents"], ask_tab["outlets"]],
        api_name="rebuild",  # POST /gradio_api/call/rebuild, as benchmarks/load.py does
        api_visibility="private",
        concurrency_id="rebuild",
    )


def rebuilder(service: AnswerService) -> Any:
    """The Rebuild button's handler: status, corpus table, a message, and the filters' new choices.

    A ``qa index`` of the same folder running elsewhere makes it refuse at
    once, saying so, rather than hold the page while it waits.
    """

    def run_rebuild(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:  # noqa: B008
        try:
            report = service.refresh(rebuild=True, progress=True)
            done = (
                f"Rebuilt: {report.documents} documents, {report.passages} passages "
                f"({report.embedded} embedded) in {report.seconds:.1f} s."
            )
        except QAError as error:
            done = f"Not rebuilt: {as_markdown_text(str(error))}."
        return (
            _status(service),
            corpus_rows(service.documents()),
            done,
            gr.update(choices=_document_choices(service)),
            gr.update(choices=_outlet_choices(service)),
        )

    return run_rebuild


def start_notice(service: AnswerService) -> str:
    """Why the index was rebuilt when the app started (damaged, another model, ...), if it was."""
    report = service.report
    if report is None or not report.rebuilt_reason:
        return ""
    return f"Rebuilt from scratch when the app started: {as_markdown_text(report.rebuilt_reason)}."


def _status(service: AnswerService) -> str:
    state = service.status()
    return status_markdown(state.documents, state.passages, state.model, state.built_at, state.rebuilding)


def _search_api(service: AnswerService) -> Any:
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
            return result_to_dict(service.ask(text, k=passages, mode=mode))
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
