"""The app in a real headless Chromium: ask, read the sources, open an article, stay safe, rebuild.

Runs ``app.py`` with the real bundled model on a free port. Without Chromium
these tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CORPUS, REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUESTION = "Why do defectors return to North Korea?"
XSS = "<img src=x onerror=alert(1)>"
STARTUP_SECONDS = 180
CSP_WATCH = """
window.qaCspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.qaCspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline code"}`);
});
"""
ANSWER_MS = 120_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def chromium() -> str:
    if CHROMIUM is None:
        message = "no Chromium found (Debian: apt-get install chromium); the browser tests need it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not serve {url} within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


# One app for every browser test module (test_browser_chat.py imports these fixtures):
# pytest would start one a module, and each start loads the model and builds an index.
_SERVING: dict[str, str] = {}


@pytest.fixture(scope="session")
def app_url(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if "url" in _SERVING:
        yield _SERVING["url"]
        return
    workdir = tmp_path_factory.mktemp("app")
    shutil.copytree(CORPUS, workdir / "corpus")
    with serving_app(workdir) as url:
        _SERVING["url"] = url
        yield url


@contextlib.contextmanager
def serving_app(workdir: Path, options: tuple[str, ...] = ()) -> Iterator[str]:
    """``app.py`` with the real model on ``workdir``'s corpus/ folder, serving until the block ends; its URL.

    ``options`` go to ``app.py`` too. What it prints goes to ``workdir/app.log``.
    """
    port = _free_port()
    log = workdir / "app.log"
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--corpus", "corpus", "--index", "index"]
    command.extend(options)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT, env=environment)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_serving(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture
def page(chromium: str, app_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
        # Anything the Content-Security-Policy blocks, as the page sees it and as the console says.
        page.add_init_script(CSP_WATCH)
        page.csp_console = []  # type: ignore[attr-defined]
        page.on(  # type: ignore[attr-defined]
            "console",
            lambda message: "Content Security Policy" in message.text and page.csp_console.append(message.text),  # type: ignore[attr-defined]
        )
        page.goto(app_url)
        page.wait_for_selector("#qa-question textarea")
        yield page
        violations = _csp_violations(page)
        browser.close()
        assert violations == [], violations  # every test's steps ran under the policy unhindered


def _csp_violations(page: object) -> list[str]:
    seen = page.evaluate("() => window.qaCspViolations || []")  # type: ignore[attr-defined]
    return [*seen, *page.csp_console]  # type: ignore[attr-defined]


def _ask(page: object, question: str) -> None:
    box = page.locator("#qa-question textarea")  # type: ignore[attr-defined]
    box.fill(question)
    page.locator("#qa-ask").click()  # type: ignore[attr-defined]


def _last_reply(page: object) -> object:
    return page.locator("#qa-chat .message-row.bot-row").last  # type: ignore[attr-defined]


def test_example_question_gets_an_answer_with_korea_times_attribution(page: object, screenshots: Path) -> None:
    page.get_by_role("button", name=QUESTION).click()  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-sources')?.innerText.includes('The Korea Times')", timeout=ANSWER_MS
    )
    reply = _last_reply(page).inner_text()  # type: ignore[attr-defined]
    assert re.search(r"\[\d+\]", reply), reply  # cited
    sources = page.locator("#qa-sources").inner_text()  # type: ignore[attr-defined]
    assert "Why do NK defectors flee to destitute North?" in sources and "paragraph" in sources
    assert page.locator("#qa-sources mark").count() >= 1  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "answer.png"), full_page=True)  # type: ignore[attr-defined]


def test_a_source_opens_its_article_with_the_paragraph_highlighted(page: object, screenshots: Path) -> None:
    _ask(page, QUESTION)
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-sources .qa-source')", timeout=ANSWER_MS
    )
    page.locator("#qa-article-choice input").click()  # type: ignore[attr-defined]
    page.get_by_role("option").first.click()  # type: ignore[attr-defined]
    highlighted = page.locator("#qa-article .qa-highlight")  # type: ignore[attr-defined]
    highlighted.wait_for(timeout=30_000)
    first_source = page.locator("#qa-sources .qa-passage").first.inner_text()  # type: ignore[attr-defined]
    assert first_source.split("\n")[0][:60] in highlighted.inner_text()
    page.screenshot(path=str(screenshots / "article.png"), full_page=True)  # type: ignore[attr-defined]


def test_the_short_answer_leads_and_is_marked_in_its_evidence(page: object, screenshots: Path) -> None:
    _ask(page, "What did Kim Yojong order?")
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-sources .qa-source')", timeout=ANSWER_MS
    )
    reply = _last_reply(page)
    lead = reply.locator("strong").first  # type: ignore[attr-defined]
    assert lead.inner_text().startswith("Answer: "), reply.inner_text()  # type: ignore[attr-defined]
    short = lead.inner_text().removeprefix("Answer: ").strip()
    marked = page.locator("#qa-sources mark strong.qa-answer")  # type: ignore[attr-defined]
    assert marked.count() >= 1
    assert short in [marked.nth(i).inner_text().strip() for i in range(marked.count())]
    page.screenshot(path=str(screenshots / "short_answer.png"), full_page=True)  # type: ignore[attr-defined]
    # Without the reader (Settings), the same question gets today's answer: no short answer first.
    page.locator("#qa-settings").get_by_text("Settings and filters").click()  # type: ignore[attr-defined]
    page.locator("#qa-reader input").uncheck()  # type: ignore[attr-defined]
    _ask(page, "What did Kim Yojong order?")
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelectorAll('#qa-chat .message-row.bot-row').length >= 2", timeout=ANSWER_MS
    )
    assert not _last_reply(page).inner_text().startswith("Answer:")  # type: ignore[attr-defined]
    # Earlier answers keep their sources in the panel, hidden: only the latest one shows.
    assert page.locator("#qa-sources strong.qa-answer:visible").count() == 0  # type: ignore[attr-defined]


def test_markup_in_a_question_is_shown_as_text_and_never_runs(page: object, screenshots: Path) -> None:
    _ask(page, XSS)
    _last_reply(page).wait_for(timeout=ANSWER_MS)  # type: ignore[attr-defined]
    page.wait_for_timeout(1000)  # type: ignore[attr-defined]
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert XSS in page.locator("#qa-chat").inner_text()  # type: ignore[attr-defined]
    assert page.locator("#qa-chat img[src='x']").count() == 0  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "markup.png"), full_page=True)  # type: ignore[attr-defined]


def test_rebuild_completes_while_a_question_is_answered(page: object, screenshots: Path) -> None:
    page.get_by_role("tab", name="Corpus").click()  # type: ignore[attr-defined]
    assert (
        "5** documents" in page.locator("#qa-status").inner_text()
        or "5 documents"
        in page.locator(  # type: ignore[attr-defined]
            "#qa-status"
        ).inner_text()
    )
    page.locator("#qa-rebuild").click()  # type: ignore[attr-defined]
    page.get_by_role("tab", name="Ask").click()  # type: ignore[attr-defined]
    _ask(page, "What presents are families in Hoeryong getting?")
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-sources')?.innerText.includes('Hoeryong')", timeout=ANSWER_MS
    )
    page.get_by_role("tab", name="Corpus").click()  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-rebuild-message')?.innerText.includes('Rebuilt')", timeout=ANSWER_MS
    )
    page.screenshot(path=str(screenshots / "rebuild.png"), full_page=True)  # type: ignore[attr-defined]


def test_the_app_works_under_its_security_headers(page: object, app_url: str) -> None:
    response = page.reload()  # type: ignore[attr-defined]
    headers = response.all_headers()
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    page.wait_for_selector("#qa-question textarea")  # type: ignore[attr-defined]
    # Asking, reading the sources, opening an article (scrolled by a script), the Corpus tab.
    _ask(page, QUESTION)
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => document.querySelector('#qa-sources .qa-source')", timeout=ANSWER_MS
    )
    page.locator("#qa-article-choice input").click()  # type: ignore[attr-defined]
    page.get_by_role("option").first.click()  # type: ignore[attr-defined]
    page.locator("#qa-article .qa-highlight").wait_for(timeout=30_000)  # type: ignore[attr-defined]
    page.get_by_role("tab", name="Corpus").click()  # type: ignore[attr-defined]
    page.locator("#qa-corpus").wait_for(timeout=30_000)  # type: ignore[attr-defined]
    assert _csp_violations(page) == []
    # The policy is in force: a script the page did not ship is refused.
    page.evaluate(  # type: ignore[attr-defined]
        "() => { const s = document.createElement('script'); s.src = 'https://example.org/x.js'; "
        "document.head.appendChild(s); }"
    )
    page.wait_for_timeout(500)  # type: ignore[attr-defined]
    assert any("script-src" in violation for violation in _csp_violations(page))
    page.evaluate("() => { window.qaCspViolations = []; }")  # type: ignore[attr-defined]
    page.csp_console.clear()  # type: ignore[attr-defined]


def test_another_site_cannot_frame_the_app(chromium: str, app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    framing = tmp_path / "frame.html"
    framing.write_text(f'<iframe id="app" src="{app_url}" width="800" height="600"></iframe>', encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(framing.as_uri())
        page.wait_for_timeout(5000)
        frame = page.frame_locator("#app")
        assert frame.locator("#qa-question").count() == 0  # the browser refused to show it
        browser.close()
