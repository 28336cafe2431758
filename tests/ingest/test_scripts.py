"""Article text in any script, and without final punctuation, is kept; boilerplate still goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ingest.clean import clean_text
from qa.ingest.corpus import load_documents
from qa.ingest.split import split_passages
from qa.ingest.words import count_words, ends_sentence
from qa.records import Document

JAPANESE_TITLE = "金正恩氏、脱北者に帰国呼びかけ"
JAPANESE = (
    "北朝鮮の金正恩総書記が、韓国に逃れた脱北者に対して帰国を呼びかけるよう関係機関に指示したことが分かった。",
    "関係者によると、北朝鮮に残る家族が電話で説得する例が増えており、帰国した人は国営テレビで謝罪させられている。",
    "韓国政府は脱北者の安全確認を急いでいるが、説得を受けた人の数は明らかにしていない。",
)
CHINESE_TITLE = "朝鲜呼吁脱北者回国"
CHINESE = (
    "据消息人士透露，朝鲜最高领导人金正恩近日下令各级机关设法劝说逃往韩国的脱北者返回朝鲜。",
    "消息人士称，当局正在调查脱北者留在朝鲜的家属，并要求他们通过电话劝说亲属回国。",
)
# Thai puts spaces between phrases and ends sentences with none.
THAI = (
    "ผู้นำเกาหลีเหนือสั่งให้หน่วยงานรัฐเร่งติดตามผู้แปรพักตร์ที่หนีไปเกาหลีใต้ให้กลับประเทศ โดยใช้ครอบครัวที่ยังอยู่ในเกาหลีเหนือเป็นผู้โทรศัพท์ไปเกลี้ยกล่อม"
)
FURNITURE = ["ホーム", "ニュース", "ログイン", "Share on Facebook", "Copyright © 2021 Example Shimbun"]
PROSE = "The ministry said the figures would be published next week"  # no final period, 10 words


def test_words_are_counted_in_scripts_without_spaces() -> None:
    assert count_words("The river rose after the rain, officials said.") == 8
    assert count_words("Les réfugiés « C'est très difficile », a-t-il dit.") == 9  # spaces, as ever
    assert count_words("北朝鮮") == 2  # three characters, about two words
    assert count_words(JAPANESE[0]) >= 20 and count_words(CHINESE[0]) >= 20
    assert count_words(THAI) >= 20
    assert count_words("北朝鮮は2020年にiPhoneを禁止した。") == 2 + 6  # "2020", "iPhone", and 11 characters


@pytest.mark.parametrize("text", ["それは違う。", "他说：“不行！”", "नहीं।", "لماذا؟", "He left.”", "「終わり。」"])
def test_sentence_ends_of_every_script(text: str) -> None:
    assert ends_sentence(text)


@pytest.mark.parametrize("text", ["", "No end", "Ends with a quote”", "それは"])
def test_no_sentence_end(text: str) -> None:
    assert not ends_sentence(text)


@pytest.mark.parametrize(
    ("title", "paragraphs"), [(JAPANESE_TITLE, JAPANESE), (CHINESE_TITLE, CHINESE)], ids=["japanese", "chinese"]
)
def test_an_article_in_chinese_or_japanese_keeps_its_paragraphs_and_drops_furniture(
    tmp_path: Path, title: str, paragraphs: tuple[str, ...]
) -> None:
    page = "\n".join([*FURNITURE[:3], title, "\n\n".join(paragraphs), *FURNITURE[3:]])
    cleaned = clean_text(page)
    assert cleaned.paragraphs == paragraphs
    assert cleaned.title == title
    (tmp_path / "article.txt").write_text(page, encoding="utf-8")
    [document] = load_documents(tmp_path)  # was "no article text found"
    assert document.paragraphs == paragraphs


def test_thai_without_final_punctuation_is_kept() -> None:
    assert clean_text(f"Home\nLogin\n\n{THAI}\n\n{THAI} ต่อ\n").paragraphs == (THAI, f"{THAI} ต่อ")


def test_a_long_one_line_file_without_final_punctuation_is_kept(tmp_path: Path) -> None:
    line = " ".join([PROSE.lower().replace("the ministry", "the ministry of unification")] * 6)
    (tmp_path / "one-line.txt").write_text(line)
    [document] = load_documents(tmp_path)
    assert document.paragraphs == (line,)


def test_a_one_paragraph_file_without_final_punctuation_is_kept() -> None:
    assert clean_text(f"{PROSE} on Monday\n").paragraphs == (f"{PROSE} on Monday",)


def test_a_paragraph_without_final_punctuation_beside_the_article_is_kept() -> None:
    body = "Officials said the border had been closed since the winter, and that no one had crossed it."
    page = f"A headline of some words\nBy Lois Lane\n{PROSE}\n\n{body}\n\n{PROSE} again\nShare on Facebook\n"
    assert clean_text(page).paragraphs == (PROSE, body, f"{PROSE} again")


def test_long_lines_without_punctuation_among_furniture_are_still_dropped() -> None:
    body = "Officials said the border had been closed since the winter, and that no one had crossed it."
    related = "Two-star general to be relieved after North Korean defector's border crossing last week"
    menu = " ".join(["Home World Politics Business Economy Markets Tech Science Health Sports Culture"] * 3)
    page = "\n".join([menu, "A headline of some words", body, "", "• Related", related, "• More", "Login"])
    assert clean_text(page).paragraphs == (body,)


def test_hard_wrapped_japanese_lines_are_all_kept() -> None:
    # Lines cut mid-sentence have no sentence end; beside the article they are near-good, so kept.
    wrapped = [JAPANESE[1][:25], JAPANESE[1][25:], JAPANESE[0][:30], JAPANESE[0][30:]]
    cleaned = clean_text("\n".join(["Login", *wrapped, "Share on Facebook"]))
    assert (cleaned.paragraphs, cleaned.title) == (tuple(wrapped), "")


def test_a_short_paragraph_is_judged_by_words_in_any_script_when_splitting() -> None:
    # Counted by spaces, each paragraph was one "word" and the first, without a period
    # the splitter knew, was taken for a heading and merged into the next.
    document = Document(doc_id="a.txt", source="a.txt", paragraphs=JAPANESE[:2])
    assert [p.text for p in split_passages(document, max_tokens=254, min_words=12)] == list(JAPANESE[:2])


def test_an_opening_paragraph_without_a_period_is_not_taken_for_the_headline() -> None:
    lead = "Officials in the border town said on Monday that the river had risen by two metres overnight"
    body = "Villagers moved their animals to higher ground, and the school was closed until further notice."
    cleaned = clean_text(f"Login\n{lead}\n{body}\n")
    assert (cleaned.title, cleaned.paragraphs) == ("", (lead, body))


def test_a_long_headline_in_title_case_is_the_headline() -> None:
    title = "North Korea’s Kim Jong Un Orders State Organs to Repatriate Defectors From the South"
    body = "Villagers moved their animals to higher ground, and the school was closed until further notice."
    cleaned = clean_text(f"{title}\n{body}\n")
    assert (cleaned.title, cleaned.paragraphs) == (title, (body,))
