"""The Gradio app: the Ask tab (``qa.web.chat``), the Corpus tab (``qa.web.corpus_tab``) and the API.

Handlers only translate between widgets and ``AnswerService``; answering lives
in ``qa.search`` and all HTML in ``qa.web.present``. ``launch`` serves the app: behind
a login when given users, behind ``qa.web.guard`` always, and never serving a file from disk.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import gradio as gr
import pydantic
from gradio.exceptions import ComponentProcessingError
from starlette.middleware import Middleware

from qa.web.api import search_api
from qa.web.auth import Credentials
from qa.web.chat import ANSWER_CONCURRENCY, chat_tab
from qa.web.corpus_tab import corpus_tab
from qa.web.guard import MAX_BODY_BYTES, RequestGuard, guard_policy
from qa.web.service import AnswerService

CSS = """
.qa-source { border-left: 3px solid #c7d2fe; padding: 4px 10px; margin: 10px 0; scroll-margin-top: 8px; }
.qa-source.qa-selected { border-left-color: #f59e0b; background: #fffbeb; }
.qa-source.qa-flash { animation: qa-flash 1.6s ease-out; }
@keyframes qa-flash { from { background: #fde68a; } to { background: #fffbeb; } }
.qa-source-meta, .qa-article-meta, .qa-also, .qa-turn-question { color: #555; font-size: 0.9em; }
.qa-highlight { background: #fef9c3; }
.qa-para-number { color: #888; font-size: 0.8em; margin-right: 4px; }
mark { background: #fde68a; }
#qa-chat a[href^="#qa-source-"] { text-decoration: none; font-weight: 600; }
.qa-chips { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 0.9em; }
.qa-chip { background: #e0e7ff; color: #1e1b4b; border-radius: 999px; padding: 2px 10px; }
#qa-examples button { flex: 1 1 auto; }
/* Beside the chat, the sources and the article scroll inside the window's height (over Gradio's inline overflow). */
#qa-sources, #qa-article { max-height: calc(100vh - 330px); overflow-y: auto !important; }
#qa-chips:not(:has(.qa-chip)) { display: none; }
/* On a phone the panel is below the chat, and the page scrolls. */
@media (max-width: 768px) { #qa-sources, #qa-article { max-height: none; overflow-y: visible !important; } }
"""
# Runs once when the page loads. A click on an answer's [n] shows that source (of
# that answer: older answers' sources are kept hidden) and highlights it, instead of
# following the link. A message's copy button copies what the message shows, as
# plain text with its [n], and the sources it cites, one a line (from each
# citation's tooltip), rather than the Markdown Gradio would copy.
PAGE_SCRIPT = """() => {
  if (window.qaPage) return;
  window.qaPage = true;
  const showSource = (id) => {
    const tab = document.querySelector('#qa-tab-sources-button');
    if (tab && tab.getAttribute('aria-selected') !== 'true') tab.click();
    setTimeout(() => {
      const source = document.getElementById(id);
      if (!source) return;
      const turn = source.closest('.qa-turn');
      turn?.parentElement?.querySelectorAll('.qa-turn').forEach((other) => { other.hidden = other !== turn; });
      document.querySelectorAll('.qa-source.qa-selected').forEach((other) => other.classList.remove('qa-selected'));
      source.classList.remove('qa-flash');
      void source.offsetWidth;
      source.classList.add('qa-selected', 'qa-flash');
      const box = document.querySelector('#qa-sources');
      if (box && box.scrollHeight > box.clientHeight + 1) {
        box.scrollTop += source.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
      } else {
        source.scrollIntoView({block: 'start'});
      }
    }, 60);
  };
  const BLOCKS = ['P', 'UL', 'OL', 'DIV', 'H1', 'H2', 'H3', 'BLOCKQUOTE', 'PRE'];
  const plain = (node) => {
    let out = '';
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) { out += child.textContent; continue; }
      if (child.nodeType !== Node.ELEMENT_NODE || child.matches('button, svg, style')) continue;
      const tag = child.tagName;
      if (tag === 'BR') out += '\\n';
      else if (tag === 'LI') out += '- ' + plain(child).trim() + '\\n';
      else if (BLOCKS.includes(tag)) out += '\\n' + plain(child).trim() + '\\n\\n';
      else out += plain(child);
    }
    return out;
  };
  const copyText = (message) => {
    const text = plain(message).replace(/\\n{3,}/g, '\\n\\n').trim();
    const cited = new Map();
    message.querySelectorAll('a[href^="#qa-source-"]').forEach((link) => {
      const lines = (link.getAttribute('title') || '').split('\\n');
      if (!cited.has(link.getAttribute('href'))) cited.set(link.getAttribute('href'), lines.slice(0, 2).join(', '));
    });
    return cited.size ? text + '\\n\\nSources:\\n' + [...cited.values()].join('\\n') : text;
  };
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('#qa-chat a[href^="#qa-source-"]');
    if (link) {
      event.preventDefault();
      event.stopPropagation();
      showSource(link.getAttribute('href').slice(1));
      return;
    }
    const button = event.target.closest && event.target.closest('#qa-chat button');
    const label = button ? (button.getAttribute('aria-label') || button.getAttribute('title') || '') : '';
    if (!button || !/^copy( message)?$/i.test(label.trim())) return;
    // A message's buttons follow it (Gradio 6): the row before them is the message.
    let row = button.closest('.message-row') || button.closest('.message-buttons');
    while (row && !row.matches('.message-row')) row = row.previousElementSibling;
    const message = row && (row.querySelector('.message-content') || row.querySelector('.prose'));
    if (!message) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    navigator.clipboard.writeText(copyText(message));
  }, true);
}"""


def launch(
    service: AnswerService,
    *,
    host: str,
    port: int,
    share: bool = False,
    credentials: Credentials | None = None,
    allowed_hosts: Sequence[str] = (),
    uploads: bool = True,
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
        uploads: Open Gradio's upload route for the Corpus tab's "Add
            documents" (same-site, size-limited, behind the login when there is one).
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
        js=PAGE_SCRIPT,
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
            ask_tab = chat_tab(service)
        with gr.Tab("Corpus"):
            corpus_tab(service, ask_tab)
        gr.api(  # type: ignore[attr-defined]
            search_api(service),
            api_name="search",
            concurrency_id="answer",
            concurrency_limit=ANSWER_CONCURRENCY,
        )
    blocks: gr.Blocks = app
    return blocks
