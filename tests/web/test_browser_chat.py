"""The chat in a real headless Chromium: citations, the article view, clearing, copying, layout, filters.

Shares ``app.py`` (real model, bundled corpus) with test_browser.py. With
``QA_SCREENSHOTS=docs/screenshots`` the README's screenshots are written there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import ANSWER_MS, CHROMIUM_ARGS, CSP_WATCH, QUESTION, _csp_violations, app_url, chromium

pytestmark = pytest.mark.slow
__all__ = ["app_url", "chromium"]  # fixtures, shared with test_browser.py

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 400, "height": 800}
DAILY_NK = "dailynk-kim-yo-jong-orders-encouragement-for-defector-families.txt"
# Its answer cites the paragraph after the heading "PREVENTING POTENTIAL ALIENATION" (merged into one passage).
INTIMIDATED = "Why might families of defectors feel psychologically intimidated?"


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("QA_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("chat-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Pages:
    """Opens the app in fresh pages of a given size; checks at the end that no page broke the CSP."""

    def __init__(self, browser: Any, url: str) -> None:
        self.browser, self.url, self.opened = browser, url, []

    def open(self, viewport: dict[str, int] = DESKTOP, *, clipboard: bool = False) -> Any:
        context = self.browser.new_context(viewport=viewport)
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.url.rstrip("/"))
        page = context.new_page()
        page.add_init_script(CSP_WATCH)
        page.csp_console = []
        page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_console.append(m.text))
        page.goto(self.url)
        page.wait_for_selector("#qa-question textarea")
        self.opened.append(page)
        return page


@pytest.fixture
def pages(browser: Any, app_url: str) -> Iterator[Pages]:
    opened = Pages(browser, app_url)
    yield opened
    for page in opened.opened:
        assert _csp_violations(page) == []
        page.context.close()


def _ask(page: Any, question: str) -> Any:
    """Ask, wait for the answer's sources; the reply's element."""
    before = page.locator("#qa-chat .message-row.bot-row").count()
    page.locator("#qa-question textarea").fill(question)
    page.locator("#qa-ask").click()
    # The reply, or Gradio's error notice (a failing handler never replies).
    page.wait_for_function(
        f"() => document.querySelectorAll('#qa-chat .message-row.bot-row').length > {before}"
        " || document.querySelector('.toast-body.error')",
        timeout=ANSWER_MS,
    )
    assert page.locator("#qa-chat .message-row.bot-row").count() > before, "the app failed to answer"
    page.wait_for_timeout(300)
    return page.locator("#qa-chat .message-row.bot-row").last


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box  # type: ignore[no-any-return]


def _in_view(page: Any, selector: str) -> bool:
    box, view = _box(page, selector), page.viewport_size
    return box["y"] >= 0 and box["y"] + box["height"] <= view["height"] and box["x"] + box["width"] <= view["width"]


def _shown_in(page: Any, inner: Any, outer: str) -> bool:
    """Whether ``inner``'s top is inside the visible part of ``outer`` (a scrolling box)."""
    top, box = inner.bounding_box()["y"], _box(page, outer)
    return bool(box["y"] - 1 <= top <= box["y"] + box["height"] - 20)


def test_a_citation_is_a_link_that_shows_and_highlights_its_source(pages: Pages) -> None:
    page = pages.open()
    reply = _ask(page, QUESTION)
    links = reply.locator("a[href^='#qa-source-1-']")
    assert links.count() >= 2, reply.inner_text()
    assert "Sources are listed" not in reply.inner_text()
    last = links.last
    rank = int(last.inner_text().strip("[]"))
    source = page.locator(f"#qa-source-1-{rank}")
    # Hovering shows the source's title and its evidence.
    tooltip = last.get_attribute("title")
    title = source.locator(".qa-source-title").inner_text()
    assert tooltip.split("\n")[0] == title, (tooltip, title)
    evidence = " ".join(source.locator("mark").inner_text().split())
    assert tooltip.split("\n")[-1].strip("“”…")[:60] == evidence[:60]
    page.evaluate("() => { document.querySelector('#qa-sources').scrollTop = 0; }")
    last.click()
    page.wait_for_function(f"() => document.querySelector('#qa-source-1-{rank}').classList.contains('qa-selected')")
    page.wait_for_timeout(300)
    assert _shown_in(page, source, "#qa-sources")
    assert page.evaluate("() => document.querySelectorAll('.qa-source.qa-selected').length") == 1
    # An earlier answer's citation shows that answer's sources again.
    _ask(page, "What presents are families in Hoeryong getting?")
    earlier = page.locator("#qa-chat .message-row.bot-row").first.locator("a[href^='#qa-source-1-']").first
    anchor = earlier.get_attribute("href")[1:]
    earlier.click()
    page.wait_for_function(f"() => document.getElementById('{anchor}').classList.contains('qa-selected')")
    assert page.locator("section.qa-turn[data-turn='1']").is_visible()
    assert not page.locator("section.qa-turn[data-turn='2']").is_visible()


def test_the_article_view_highlights_the_paragraph_holding_the_evidence(pages: Pages, screenshots: Path) -> None:
    page = pages.open()
    _ask(page, INTIMIDATED)
    sources = page.locator("#qa-sources .qa-source", has_text="PREVENTING POTENTIAL ALIENATION")
    assert "paragraph 10 ·" in sources.first.locator(".qa-source-meta").inner_text()
    page.locator("#qa-article-choice input").click()
    page.get_by_role("option", name=re.compile(f"{re.escape(DAILY_NK)}, paragraph 10")).first.click()
    highlighted = page.locator("#qa-article .qa-highlight")
    highlighted.wait_for(timeout=30_000)
    assert highlighted.count() == 1 and highlighted.get_attribute("id") == "qa-para-10"
    assert highlighted.inner_text().split(maxsplit=1)[1].startswith("This directive seems")
    assert "qa-highlight" not in (page.locator("#qa-para-9").get_attribute("class") or "")
    assert "families of defectors may feel psychologically intimidated" in highlighted.locator("mark").inner_text()
    # An untitled article is named by its file name once; what is unknown leaves no gap.
    header = page.locator("#qa-article .qa-article").inner_text().split("\n1 ")[0]
    assert header.count(DAILY_NK) == 1 and "Daily NK" in header and " ·  · " not in header


def test_the_chats_clear_button_forgets_the_conversation(pages: Pages) -> None:
    page = pages.open()
    _ask(page, "What happened to Lim Ji-hyun?")
    followed = _sources(page, "And what about their families?")
    page.locator("#qa-chat button[aria-label='Clear']").click()
    page.wait_for_function("() => !document.querySelector('#qa-sources .qa-source')")
    assert page.locator("#qa-chat .message-row").count() == 0
    after_clearing = _sources(page, "And what about their families?")
    fresh = _sources(pages.open(), "And what about their families?")
    assert after_clearing == fresh  # asked as a first question ...
    assert after_clearing != followed  # ... not as a follow-up to the cleared conversation


def _sources(page: Any, question: str) -> list[str]:
    _ask(page, question)
    return [title.inner_text() for title in page.locator("#qa-sources .qa-turn:not([hidden]) .qa-source-title").all()]


def test_copy_gives_plain_text_with_citations_and_the_sources(pages: Pages) -> None:
    from gradio_client import Client

    page = pages.open(clipboard=True)
    reply = _ask(page, "What did Kim Yo-jong order?")
    reply.hover()
    buttons = reply.locator("xpath=following-sibling::div[contains(@class, 'message-buttons')][1]")
    buttons.locator("button[aria-label='Copy message']").click()
    page.wait_for_timeout(300)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    expected = Client(pages.url, verbose=False).predict("What did Kim Yo-jong order?", 5, "hybrid", api_name="/search")
    answer, _, listed = copied.partition("\n\nSources:\n")
    short = expected["short_answer"]
    lead = f"Answer: {short['text']} [{short['rank']}] " if short else ""  # the reader's short answer, first
    assert " ".join(answer.split()) == " ".join((lead + expected["answer"]).split())  # the answer as the API gives it
    assert "\\" not in copied and "](#" not in copied
    cited = dict.fromkeys(int(n) for n in re.findall(r"\[(\d+)\]", expected["answer"]))
    hits = {hit["rank"]: hit for hit in expected["hits"]}
    lines = listed.split("\n")
    assert [int(line[1 : line.index("]")]) for line in lines] == list(cited)
    for line, rank in zip(lines, cited, strict=True):
        hit = hits[rank]
        assert line.startswith(f"[{rank}] {hit['title'] or hit['source']}, ")
        assert "paragraph" in line and (hit["outlet"] in line)


def test_settings_and_the_article_are_in_reach_and_keep_the_chat_in_view(pages: Pages, screenshots: Path) -> None:
    page = pages.open(DESKTOP)
    assert _in_view(page, "#qa-settings") and _in_view(page, "#qa-article-choice")
    reply = _ask(page, QUESTION)
    assert reply.locator("a[href^='#qa-source-']").count() >= 1
    assert _in_view(page, "#qa-settings") and _in_view(page, "#qa-article-choice") and _in_view(page, "#qa-chat")
    # The sources scroll inside their panel: the page itself does not need scrolling.
    assert page.evaluate("() => document.documentElement.scrollHeight") <= DESKTOP["height"]
    page.screenshot(path=str(screenshots / "chat-1280.png"))
    page.locator("#qa-article-choice input").click()
    page.get_by_role("option").first.click()
    page.locator("#qa-article .qa-highlight").wait_for(timeout=30_000)
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.scrollY") == 0
    assert _in_view(page, "#qa-chat") and _in_view(page, "#qa-question")
    assert _shown_in(page, page.locator("#qa-article .qa-highlight"), "#qa-article")
    page.screenshot(path=str(screenshots / "article-1280.png"))


def test_on_a_phone_the_sources_follow_the_chat(pages: Pages, screenshots: Path) -> None:
    page = pages.open(PHONE)
    _ask(page, QUESTION)
    assert _box(page, "#qa-sources")["y"] > _box(page, "#qa-chat")["y"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    page.screenshot(path=str(screenshots / "chat-400.png"), full_page=True, clip=_clip(page, 2000))
    page.locator("#qa-article-choice input").click()
    page.get_by_role("option").first.click()
    page.locator("#qa-article .qa-highlight").wait_for(timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshots / "article-400.png"))


def _clip(page: Any, height: int) -> dict[str, float]:
    full = page.evaluate("() => document.documentElement.scrollHeight")
    return {"x": 0, "y": 0, "width": PHONE["width"], "height": min(height, full)}


def test_active_filters_show_as_chips_and_the_answer_says_so(pages: Pages) -> None:
    page = pages.open()
    assert page.locator("#qa-chips .qa-chip").count() == 0
    page.locator("#qa-settings").get_by_text("Settings and filters").click()
    page.locator("#qa-outlets input").click()
    page.get_by_role("option", name="Daily NK").click()
    page.keyboard.press("Escape")
    page.locator("#qa-chips .qa-chip").first.wait_for(timeout=10_000)
    assert page.locator("#qa-chips .qa-chip").all_inner_texts() == ["outlet Daily NK"]
    assert _box(page, "#qa-chips")["y"] < _box(page, "#qa-chat")["y"]  # above the answers
    reply = _ask(page, QUESTION)
    assert reply.inner_text().startswith("Searched only outlet Daily NK.")
    metas = page.locator("#qa-sources .qa-turn:not([hidden]) .qa-source-meta").all_inner_texts()
    assert metas and all(meta.startswith("Daily NK ·") for meta in metas)
