"""The Ask tab: the chat with the corpus, its settings and filters, its sources and the article view.

Handlers only translate between widgets and ``AnswerService``; all HTML is in
``qa.web.present``, and the page's script (citations that open their source,
copying as plain text) in ``qa.web.ui``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import gradio as gr

from qa.errors import QAError
from qa.records import SearchResult
from qa.search.filters import resolve_filter
from qa.search.modes import MODES
from qa.web.present import (
    EMPTY_QUESTION_REPLY,
    KEPT_TURNS,
    article_html,
    as_markdown_text,
    chat_reply,
    clip_question,
    display_title,
    filter_chips_html,
    filter_labels,
    parse_source_choice,
    source_choices,
    sources_html,
    sources_panel,
    writing_reply,
    written_reply,
)
from qa.web.service import AnswerService

# Questions (chat and `search` API) answered at once; the rest wait in Gradio's queue.
# Measured by benchmarks/load.py on 2 cores: see README, "Many users at once".
ANSWER_CONCURRENCY = 2
EXAMPLES = [
    "Why do defectors return to North Korea?",
    "How does North Korea use defectors' families to pressure them?",
    "What did Kim Yo Jong order officials to do?",
    "Who is Lim Ji-hyun?",
]
# The conversation fills the window's height less the page heading, the question
# box, the examples and the Settings bar, so all of them show at 1280x800.
ARTICLE_PROMPT = '<p class="qa-article-empty">Choose a source above to read its whole article here.</p>'
CHAT_HEIGHT = "max(300px, calc(100vh - 400px))"
# Seconds "New conversation" waits for an update of the old one already on its way to the browser
# (Gradio sends it, then asks the answer for the next: milliseconds); a bound, should a session go.
# 2 s was too short on a loaded machine: in one fresh-clone CI run the update landed after the
# clear and the old answer stayed in the chat. The wait ends as soon as the update is sent.
SENDING_WAIT = 10.0
# The article view scrolls itself to the highlighted paragraph, not the page (which
# would carry the chat out of sight); on a phone, where the panel does not scroll, the page.
SCROLL_TO_HIGHLIGHT = """() => { setTimeout(() => {
  const box = document.querySelector('#qa-article');
  const target = box?.querySelector('.qa-highlight');
  if (!target) return;
  if (box.scrollHeight > box.clientHeight + 1) {
    box.scrollTop += target.getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4;
  } else {
    target.scrollIntoView({block: 'center'});
  }
}, 50); }"""


class Conversation:
    """Which conversation a browser session's chat shows, so that an answer written into an older one stops.

    Gradio hands every handler of a session the one object in the session's ``gr.State``, and
    "New conversation" runs beside an answer still being written: the page does not wait for
    Gradio's own cancelling before it clears. Without this, the answer's update already on its
    way, or the last value Gradio sends again when a run ends, wrote the old conversation back
    over the cleared chat (in 4 of 6 runs of tests/web/test_browser_written.py).
    """

    def __init__(self) -> None:
        self.number = 0
        self._sending = 0
        self._changed = threading.Condition()

    def __deepcopy__(self, memo: dict[int, Any]) -> Conversation:
        return Conversation()  # Gradio copies a State's first value into each new session

    def _may_send(self, number: int) -> bool:
        """Whether an update to conversation ``number`` may go to the browser; if it may, call ``_sent`` after."""
        with self._changed:
            if number != self.number:
                return False
            self._sending += 1
            return True

    def _sent(self) -> None:
        """An update allowed by ``_may_send`` has gone to the browser (or never will)."""
        with self._changed:
            self._sending -= 1
            self._changed.notify_all()

    def start_afresh(self, wait: float = SENDING_WAIT) -> None:
        """Ends the conversation; returns once no update to it is on its way (or after ``wait`` seconds)."""
        with self._changed:
            self.number += 1
            self._changed.wait_for(lambda: self._sending == 0, timeout=wait)

    def updates(self, answer: Generator[tuple[Any, ...]]) -> Generator[tuple[Any, ...]]:
        """``answer``'s updates while this conversation is the one shown, then one that changes nothing.

        ``answer`` is closed when a new conversation starts. Gradio asks for the next update
        only once it has sent the last, so ``_sent`` is called when this resumes (or is closed
        by Gradio's cancelling). The update that changes nothing comes last because Gradio ends
        a run by sending each output's last value once more: that would be the old conversation.
        """
        number, outputs = self.number, 0
        with contextlib.closing(answer):
            for update in answer:
                outputs = len(update)
                if not self._may_send(number):
                    break
                try:
                    yield update
                finally:
                    self._sent()
        if outputs:
            yield (gr.skip(),) * outputs


def chat_tab(service: AnswerService) -> dict[str, Any]:
    """The Ask tab: the chat, its settings, the sources and the article view; returns the filter widgets."""
    history = gr.State([])  # the questions asked so far, for follow-ups
    turns = gr.State([])  # (turn, sources HTML) of each answer, so older citations find their sources
    conversation = gr.State(Conversation())  # which one the chat shows, so that "New conversation" stops answers
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, elem_id="qa-conversation"):
            chips = gr.HTML(elem_id="qa-chips")
            chat = gr.Chatbot(
                label="Conversation",
                height=CHAT_HEIGHT,
                elem_id="qa-chat",
                buttons=["copy"],
                latex_delimiters=[],  # "$" in an article is money, not mathematics
                # A written answer follows the extractive one as its own message, with its own copy button.
                group_consecutive_messages=False,
            )
            with gr.Row(equal_height=True):
                question = gr.Textbox(
                    placeholder="Ask a question about the articles",
                    show_label=False,
                    elem_id="qa-question",
                    scale=6,
                )
                ask = gr.Button("Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=70)
                new = gr.Button("New conversation", elem_id="qa-new", scale=1, min_width=170)
            with gr.Row(elem_id="qa-examples"):
                examples = [gr.Button(text, size="sm", elem_classes=["qa-example"], min_width=120) for text in EXAMPLES]
            settings = _settings(service)
        with gr.Column(scale=2, elem_id="qa-side"):
            article_choice = gr.Dropdown(label="Open a source's article", choices=[], elem_id="qa-article-choice")
            with gr.Tabs(elem_id="qa-side-tabs") as side:
                with gr.Tab("Sources", id="sources", elem_id="qa-tab-sources"):
                    sources = gr.HTML(elem_id="qa-sources")
                with gr.Tab("Article", id="article", elem_id="qa-tab-article"):
                    article = gr.HTML(
                        '<p class="qa-article-empty">Open a source\'s article above.</p>', elem_id="qa-article"
                    )
    fields = {
        "question": question,
        "chat": chat,
        "history": history,
        "turns": turns,
        "conversation": conversation,
        **settings,
    }
    outputs = [chat, history, turns, sources, article_choice, article, question, side, chips]
    respond = _responder(service, fields)
    inputs = set(fields.values())
    # Every way of asking shares one limit ("answer") with the `search` API.
    answering: dict[str, Any] = {
        "api_visibility": "private",
        "concurrency_id": "answer",
        "concurrency_limit": ANSWER_CONCURRENCY,
    }
    asking: list[dict[str, Any]] = [
        trigger(respond, inputs, outputs, **answering) for trigger in (ask.click, question.submit)
    ]
    for button in examples:
        # An example fills the question box, then is asked like a typed question.
        asking.append(
            button.click(lambda text: text, button, question, api_visibility="private").then(
                respond, inputs, outputs, **answering
            )
        )
    # "New conversation" and the chat's own clear (trash) button forget the same things; a
    # written answer still streaming stops, rather than write the old conversation back.
    stops = asking if service.llm is not None else None
    new.click(start_afresh, conversation, outputs[:6], api_visibility="private", cancels=stops)
    chat.clear(start_afresh, conversation, outputs[:6], api_visibility="private", cancels=stops)
    filters = [settings["documents"], settings["outlets"], settings["from"], settings["to"]]
    for widget in filters:
        widget.change(_chips_shower(service), filters, chips, api_visibility="private")
    article_choice.change(
        _article_opener(service), article_choice, [article, side], api_name="article", api_visibility="private"
    ).then(None, js=SCROLL_TO_HIGHLIGHT)
    return {"documents": settings["documents"], "outlets": settings["outlets"]}


def start_afresh(conversation: Conversation) -> tuple[Any, ...]:
    """A new conversation: no messages, no earlier questions, no sources, no article."""
    conversation.start_afresh()
    return [], [], [], "", gr.update(choices=[], value=None), ARTICLE_PROMPT


def _settings(service: AnswerService) -> dict[str, Any]:
    with gr.Accordion("Settings and filters", open=False, elem_id="qa-settings"):
        with gr.Row():
            k = gr.Slider(1, 20, value=5, step=1, label="Passages", elem_id="qa-k")
            mode = gr.Radio(list(MODES), value="hybrid", label="Retrieval", elem_id="qa-mode")
            reader = gr.Checkbox(
                value=service.reader is not None,
                interactive=service.reader is not None,
                label="Reader: re-rank hybrid search, lead with the short answer, refuse what the articles do not say",
                elem_id="qa-reader",
            )
        with gr.Row():
            documents = gr.Dropdown(
                document_choices(service),
                multiselect=True,
                allow_custom_value=True,  # an article the list leaves out is typed: file name or title
                label="Only these articles",
                info=unlisted_hint(service),
                elem_id="qa-documents",
            )
            outlets = gr.Dropdown(
                outlet_choices(service), multiselect=True, label="Only these outlets", elem_id="qa-outlets"
            )
        with gr.Row():
            date_from = gr.Textbox(label="From date", placeholder="YYYY-MM-DD", elem_id="qa-from")
            date_to = gr.Textbox(label="To date", placeholder="YYYY-MM-DD", elem_id="qa-to")
    return {
        "k": k,
        "mode": mode,
        "reader": reader,
        "documents": documents,
        "outlets": outlets,
        "from": date_from,
        "to": date_to,
    }


def document_choices(service: AnswerService) -> list[tuple[str, str]]:
    """The documents filter's choices: (title or file name, document id), as many as the page lists."""
    return [(display_title(d.title, d.source), d.doc_id) for d, _ in service.listed_documents()]


def unlisted_hint(service: AnswerService, *, instruction: str = "type a file name or title for another") -> str | None:
    """What to do about the documents a list on the page leaves out; ``None`` when it lists them all."""
    listed, total = len(service.listed_documents()), service.status().documents
    return f"{listed:,} of {total:,} articles listed: {instruction}" if listed < total else None


def outlet_choices(service: AnswerService) -> list[str]:
    """The outlets filter's choices, sorted."""
    return sorted({d.outlet for d, _ in service.documents() if d.outlet})


def active_filters(
    service: AnswerService, documents: Sequence[str] | None, outlets: Sequence[str] | None, date_from: str, date_to: str
) -> list[str]:
    """The filters' widget values in words (``qa.web.present.filter_labels``), documents by their titles.

    A value that is no document's id (a file name or title typed for an article the list
    leaves out) is shown as typed.
    """
    wanted = set(documents or ())
    titles = {d.doc_id: display_title(d.title, d.source) for d in service.index.documents if d.doc_id in wanted}
    return filter_labels(
        documents=[titles.get(doc_id, doc_id) for doc_id in documents or ()],
        outlets=list(outlets or ()),
        date_from=date_from or "",
        date_to=date_to or "",
    )


def _chips_shower(service: AnswerService) -> Any:
    def show_chips(documents: list[str] | None, outlets: list[str] | None, date_from: str, date_to: str) -> str:
        return filter_chips_html(active_filters(service, documents, outlets, date_from, date_to))

    return show_chips


def _responder(service: AnswerService, fields: dict[str, Any]) -> Any:
    """The chat handler; Gradio passes it every field's value in one dict keyed by component.

    With a language model the handler is a generator: the extractive answer and its sources
    come at once, then the model's answer streams into a second message (``_writer``).
    """

    def respond(values: dict[Any, Any]) -> tuple[Any, ...]:
        return _answer(service, fields, values)[0]

    def answer_and_write(values: dict[Any, Any]) -> Generator[tuple[Any, ...]]:
        outputs, asked = _answer(service, fields, values)
        yield outputs
        if asked is not None:
            result, history, number = asked
            for chat in _writer(service, outputs[0], result, history, number):
                yield chat, *[gr.skip()] * (len(outputs) - 1)

    def respond_and_write(values: dict[Any, Any]) -> Iterator[tuple[Any, ...]]:
        conversation: Conversation = values[fields["conversation"]]
        yield from conversation.updates(answer_and_write(values))

    return respond if service.llm is None else respond_and_write


def _answer(
    service: AnswerService, fields: dict[str, Any], values: dict[Any, Any]
) -> tuple[tuple[Any, ...], tuple[SearchResult, list[str], int] | None]:
    """The handler's outputs, and what a language model is to answer: the result, the earlier questions, the turn."""
    value = {name: values[component] for name, component in fields.items()}
    chat, history, turns = value["chat"] or [], value["history"] or [], value["turns"] or []
    text, notice = clip_question(value["question"] or "")
    unchanged = (history, turns, gr.skip(), gr.skip(), gr.skip())
    if not text:
        return ([*chat, _assistant(EMPTY_QUESTION_REPLY)], *unchanged, "", gr.skip(), gr.skip()), None
    turn = [*chat, {"role": "user", "content": as_markdown_text(text)}]
    try:
        # Chosen ids and typed file names or titles alike (an article the list leaves out is typed).
        where = resolve_filter(
            service.index,
            documents=value["documents"] or (),
            outlets=value["outlets"] or (),
            date_from=value["from"] or "",
            date_to=value["to"] or "",
        )
        chosen = [name for name in value["documents"] or () if name in where.doc_ids]
        named = chosen + sorted(where.doc_ids - set(chosen))  # typed names, as the documents they name
        labels = active_filters(service, named, value["outlets"], value["from"], value["to"])
        result = service.ask(
            text,
            history=history,
            k=int(value["k"]),
            mode=value["mode"],
            where=where,
            use_reader=bool(value["reader"]),
        )
    except QAError as error:
        return ([*turn, _assistant(as_markdown_text(str(error)))], *unchanged, "", gr.skip(), gr.skip()), None
    number = turns[-1][0] + 1 if turns else 1
    answered = [*turns, (number, sources_html(result, number))][-KEPT_TURNS:]
    outputs = (
        [*turn, _assistant(chat_reply(result, notice, turn=number, filters=labels))],
        [*history, text],
        answered,
        sources_panel(answered),
        gr.update(choices=source_choices(result), value=None),
        ARTICLE_PROMPT,
        "",
        gr.Tabs(selected="sources"),
        filter_chips_html(labels),
    )
    return outputs, (result, list(history), number)


# Seconds between two updates of a streaming answer: each sends the conversation to the browser.
STREAM_INTERVAL = 0.05


def _writer(
    service: AnswerService, chat: list[Any], result: SearchResult, history: list[str], number: int
) -> Iterator[list[Any]]:
    """The conversation with the model's answer as it is written, then checked (or the notice of why not)."""
    writing = service.writing(result, history=history)
    if writing is None or not writing.asks:
        return
    text, shown = "", 0.0
    for piece in writing:
        text += piece
        if time.monotonic() - shown >= STREAM_INTERVAL:
            shown = time.monotonic()
            yield [*chat, _assistant(writing_reply(writing.model_name, text, result.hits, number))]
    written = writing.result().written
    if written is not None and (written.text or written.notice):
        yield [*chat, _assistant(written_reply(written, result.hits, number))]


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _article_opener(service: AnswerService) -> Any:
    def open_article(choice: str | None) -> tuple[str, Any]:
        if not choice:
            return gr.skip(), gr.skip()
        doc_id, place = parse_source_choice(choice)
        document = service.document(doc_id)
        shown = article_html(document, place) if document else "<p>That article is no longer in the index.</p>"
        return shown, gr.Tabs(selected="article")

    return open_article
