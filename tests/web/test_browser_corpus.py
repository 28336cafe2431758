"""The Corpus tab in a real headless Chromium: add and remove documents, one progress bar, a readable table.

Runs ``app.py`` (uploads open, as it serves them) with the real bundled model,
through the fixtures of ``test_browser``; every step runs under the app's
Content-Security-Policy, which the ``page`` fixture checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_browser import ANSWER_MS, app_url, chromium, page, screenshots  # noqa: F401 (fixtures)
from test_corpus_tab import ARTICLE

pytestmark = pytest.mark.slow

SIDECAR = {"title": "Winter on the border", "outlet": "The Test Gazette", "date": "2024-01-05"}
READABLE_TIME = re.compile(r"Index built \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC \((just now|\d+ \w+ ago)\)")
# Text of a header or cell that does not fit where it is shown: past its cell, or past the table.
CLIPPED_CELLS = """() => {
  const table = document.querySelector('#qa-corpus');
  const clipped = [];
  table.querySelectorAll('th, td').forEach((cell) => {
    if (!cell.innerText.trim()) return;
    const range = document.createRange();
    range.selectNodeContents(cell);
    const text = range.getBoundingClientRect();
    let right = Math.min(cell.getBoundingClientRect().right, table.getBoundingClientRect().right);
    for (let e = cell.parentElement; e && e !== table.parentElement; e = e.parentElement) {
      if (getComputedStyle(e).overflowX !== 'visible') right = Math.min(right, e.getBoundingClientRect().right);
    }
    if (text.right > right + 1) clipped.push(cell.innerText.slice(0, 40));
  });
  return clipped;
}"""
# Counts the progress indicators (Gradio's elapsed-time text) shown at once, while an action runs.
WATCH_PROGRESS = """() => {
  window.qaMostProgress = 0;
  window.qaProgressWatch = setInterval(() => {
    const shown = [...document.querySelectorAll('.progress-text.meta-text-center')].filter((e) => e.offsetParent);
    window.qaMostProgress = Math.max(window.qaMostProgress, shown.length);
  }, 10);
}"""


def _corpus_tab(view: object) -> None:
    view.get_by_role("tab", name="Corpus").click()  # type: ignore[attr-defined]
    view.locator("#qa-corpus").wait_for(timeout=30_000)  # type: ignore[attr-defined]


def _message(view: object) -> str:
    return str(view.locator("#qa-rebuild-message").inner_text())  # type: ignore[attr-defined]


def _wait_for_message(view: object, text: str) -> None:
    view.wait_for_function(  # type: ignore[attr-defined]
        "(text) => document.querySelector('#qa-rebuild-message')?.innerText.includes(text)", arg=text, timeout=ANSWER_MS
    )


def _choose_for_removal(view: object, name: str) -> None:
    view.locator("#qa-remove-choice input").click()  # type: ignore[attr-defined]
    view.get_by_role("option", name=re.compile(re.escape(name))).first.click()  # type: ignore[attr-defined]
    view.keyboard.press("Escape")  # type: ignore[attr-defined]


def test_the_corpus_tab_at_1280_px_has_readable_times_and_no_column_cut_off(page: object, screenshots: Path) -> None:  # noqa: F811
    page.set_viewport_size({"width": 1280, "height": 800})  # type: ignore[attr-defined]
    _corpus_tab(page)
    status = page.locator("#qa-status").inner_text()  # type: ignore[attr-defined]
    assert READABLE_TIME.search(status), status
    assert "+00:00" not in status
    assert page.evaluate(CLIPPED_CELLS) == []  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "corpus-1280.png"))  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 400, "height": 800})  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "corpus-400.png"), full_page=True)  # type: ignore[attr-defined]


def test_a_rebuild_shows_one_progress_bar(page: object) -> None:  # noqa: F811
    _corpus_tab(page)
    page.evaluate(WATCH_PROGRESS)  # type: ignore[attr-defined]
    page.locator("#qa-rebuild").click()  # type: ignore[attr-defined]
    _wait_for_message(page, "Rebuilt:")
    assert page.evaluate("() => window.qaMostProgress") == 1  # type: ignore[attr-defined]


def test_documents_are_added_and_removed_from_the_browser(page: object, tmp_path: Path, screenshots: Path) -> None:  # noqa: F811
    _corpus_tab(page)
    files = {
        "winter.txt": ARTICLE.encode(),
        "winter.meta.json": json.dumps(SIDECAR).encode(),
        "scan.txt": bytes(range(256)) * 40,
    }
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    page.locator("#qa-upload input[type=file]").set_input_files(paths)  # type: ignore[attr-defined]
    try:
        page.wait_for_function(  # type: ignore[attr-defined]
            # Gradio shows a file's stem and extension in two elements, on one line or two as the width falls.
            "() => document.querySelector('#qa-upload')?.innerText.replace(/\\s+/g, '').includes('scan.txt')",
            timeout=30_000,
        )
    except Exception as error:  # say what the page showed instead
        shown = page.locator("#qa-upload").inner_text()  # type: ignore[attr-defined]
        raise AssertionError(f"the upload did not list the files; it shows {shown!r}") from error
    page.locator("#qa-add").click()  # type: ignore[attr-defined]
    _wait_for_message(page, "Index updated: 6 documents")
    message = _message(page)
    assert "Added: winter.meta.json, winter.txt." in message
    assert "scan.txt: binary data, not text" in message
    table = page.locator("#qa-corpus").inner_text()  # type: ignore[attr-defined]
    assert "Winter on the border" in table and "The Test Gazette" in table and "scan.txt" not in table
    assert "6 documents" in page.locator("#qa-status").inner_text()  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "corpus-added.png"), full_page=True)  # type: ignore[attr-defined]

    # What qa added goes without a question.
    _choose_for_removal(page, "winter.txt")
    page.locator("#qa-remove").click()  # type: ignore[attr-defined]
    _wait_for_message(page, "Index updated: 5 documents")
    assert "Removed: winter.txt, winter.meta.json." in _message(page)
    assert "Winter on the border" not in page.locator("#qa-corpus").inner_text()  # type: ignore[attr-defined]

    # The corpus folder's own files ask first; Cancel leaves them.
    _choose_for_removal(page, "north-must-leave")
    page.locator("#qa-remove").click()  # type: ignore[attr-defined]
    question = page.locator("#qa-confirm-question")  # type: ignore[attr-defined]
    question.wait_for(timeout=30_000)
    assert "Delete 1 file that qa did not add?" in question.inner_text()
    page.screenshot(path=str(screenshots / "corpus-confirm.png"), full_page=True)  # type: ignore[attr-defined]
    page.locator("#qa-confirm-no").click()  # type: ignore[attr-defined]
    _wait_for_message(page, "Nothing was changed.")
    assert page.locator("#qa-confirm").is_hidden()  # type: ignore[attr-defined]
    assert "North Must Leave" in page.locator("#qa-corpus").inner_text()  # type: ignore[attr-defined]
    # Asked again and confirmed, it goes.
    page.locator("#qa-remove").click()  # type: ignore[attr-defined]
    page.locator("#qa-confirm-yes").click()  # type: ignore[attr-defined]
    _wait_for_message(page, "Index updated: 4 documents")
    assert "North Must Leave" not in page.locator("#qa-corpus").inner_text()  # type: ignore[attr-defined]


def test_an_empty_corpus_is_served_and_filled_from_the_browser(chromium: str, tmp_path: Path) -> None:  # noqa: F811
    """The first articles of a new corpus folder come from the browser: the app starts on an empty one."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM_ARGS, _ask, _last_reply, serving_app

    (tmp_path / "corpus").mkdir()
    with serving_app(tmp_path) as url:
        log = tmp_path / "app.log"
        assert "serving an empty index" in log.read_text(encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            view = browser.new_page(viewport={"width": 1400, "height": 1000})
            view.goto(url)
            view.wait_for_selector("#qa-question textarea")
            _ask(view, "Why do defectors return?")
            view.wait_for_function(
                "() => document.querySelector('#qa-chat')?.innerText.includes('no articles yet')", timeout=ANSWER_MS
            )
            _corpus_tab(view)
            assert "No articles yet" in _message(view)
            (tmp_path / "winter.txt").write_text(ARTICLE, encoding="utf-8")
            view.locator("#qa-upload input[type=file]").set_input_files([str(tmp_path / "winter.txt")])
            view.wait_for_function(
                "() => document.querySelector('#qa-upload')?.innerText.replace(/\\s+/g, '').includes('winter.txt')",
                timeout=30_000,
            )
            view.locator("#qa-add").click()
            _wait_for_message(view, "Index updated: 1 documents")
            view.get_by_role("tab", name="Ask").click()
            _ask(view, "Why is the market quiet near the bridge?")
            view.wait_for_function(
                "() => document.querySelector('#qa-sources')?.innerText.includes('Border towns')", timeout=ANSWER_MS
            )
            assert "no articles yet" not in str(_last_reply(view).inner_text())  # type: ignore[attr-defined]
            browser.close()
