"""The chat with a language model, in a real headless Chromium: the written answer streams in, then is checked.

``app.py --llm`` (real bundled model and corpus) against the test chat-completions server
(tests/llm_server.py), whose "trickle" model writes a word at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import ANSWER_MS, CHROMIUM_ARGS, CSP_WATCH, QUESTION, _csp_violations, chromium, serving_app

from conftest import CORPUS

pytestmark = pytest.mark.slow
__all__ = ["chromium"]  # the fixture, shared with test_browser.py


@pytest.fixture(scope="module")
def app_with_model(chromium: str, llm_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("app-llm")
    shutil.copytree(CORPUS, workdir / "corpus")
    llm_server.trickle_seconds = 0.1
    with serving_app(workdir, ("--llm", llm_server.url, "--llm-model", "trickle")) as url:
        started = (workdir / "app.log").read_text()
        assert f"Written answers: trickle at {llm_server.url}, every citation checked." in started
        assert "qa: warning" not in started  # the start-up check found the server
        yield url


@pytest.fixture
def page(chromium: str, app_with_model: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_with_model.rstrip("/"))
        page = context.new_page()
        page.add_init_script(CSP_WATCH)
        page.csp_console = []
        page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_console.append(m.text))
        page.goto(app_with_model)
        page.wait_for_selector("#qa-question textarea")
        yield page
        violations = _csp_violations(page)
        browser.close()
        assert violations == []


BOT = "#qa-chat .message-row.bot-row"


def _bot_text(page: Any, index: int) -> str:
    return str(page.evaluate(f"() => document.querySelectorAll('{BOT}')[{index}]?.innerText || ''"))


def test_the_written_answer_streams_below_the_extractive_one_then_is_checked(page: Any, tmp_path: Path) -> None:
    page.locator("#qa-question textarea").fill(QUESTION)
    page.locator("#qa-ask").click()
    # While the model writes: the extractive answer and the sources are already there.
    page.wait_for_function(
        f"() => document.querySelectorAll('{BOT}').length >= 2"
        f" && document.querySelectorAll('{BOT}')[1].innerText.includes('citations are checked when it ends')",
        timeout=ANSWER_MS,
    )
    early = _bot_text(page, 1)
    assert page.locator("#qa-sources .qa-source").count() >= 3
    assert page.locator(BOT).first.locator("a[href^='#qa-source-1-']").count() >= 1
    page.screenshot(path=str(tmp_path / "chat-written-streaming.png"))
    page.wait_for_function(
        f"() => (document.querySelectorAll('{BOT}')[1]?.innerText || '').includes('citations checked')",
        timeout=ANSWER_MS,
    )
    final = _bot_text(page, 1)
    assert len(final) > len(early) and "moon is made of green cheese" not in early  # it came word by word
    assert "Written by trickle · citations checked: not supported, 1 of 3 sentences (⚠)" in final
    assert "green cheese" in final and "⚠ (unsupported: passage [1] does not say this)" in final
    written = page.locator(BOT).nth(1)
    assert written.locator("a[href^='#qa-source-1-']").count() >= 2  # its citations link to the sources
    page.screenshot(path=str(tmp_path / "chat-written.png"))
    # Its own copy button copies it, as plain text, with the sources it cites.
    written.hover()
    buttons = written.locator("xpath=following-sibling::div[contains(@class, 'message-buttons')][1]")
    buttons.locator("button[aria-label='Copy message']").click()
    page.wait_for_timeout(300)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("Written by trickle · citations checked") and "green cheese" in copied
    assert "\nSources:\n[1] " in copied and "\\" not in copied


def test_a_new_conversation_stops_a_written_answer_on_its_way(page: Any) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator("#qa-question textarea").fill(QUESTION)
    page.locator("#qa-ask").click()
    streaming = f"(document.querySelectorAll('{BOT}')[1]?.innerText || '').includes('checked when it ends')"
    page.wait_for_function(f"() => {streaming}", timeout=ANSWER_MS)
    page.locator("#qa-new").click()
    empty = "document.querySelectorAll('#qa-chat .message-row').length === 0"
    try:
        page.wait_for_function(f"() => {empty}", timeout=ANSWER_MS)  # a loaded machine takes a while to clear
    except PlaywrightTimeout:
        rows = page.evaluate("() => [...document.querySelectorAll('#qa-chat .message-row')].map(r => r.innerText)")
        pytest.fail(f"the chat was not cleared; it shows {rows!r}")
    page.wait_for_timeout(2_500)  # the model writes on meanwhile, a word every 0.1 s: nothing may come back
    assert page.locator(BOT).count() == 0 and page.locator("#qa-chat .message-row").count() == 0
