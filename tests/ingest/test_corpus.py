"""Finding and reading corpus files: types, folders, sidecars, unreadable files."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from conftest import CORPUS, GOLD
from qa.errors import QAError
from qa.ingest.clean import CleanedText
from qa.ingest.corpus import (
    PlainTextFallbackWarning,
    SkippedFileWarning,
    corpus_fingerprint,
    find_corpus_files,
    load_documents,
)

PROSE = "This paragraph is long enough to be read as part of an article, and it ends with a period."

HTML_PAGE = """<html><head><title>Ignored page title | Site</title>
<meta name="author" content="Mina Park">
<meta property="article:published_time" content="2021-05-06">
<meta property="og:site_name" content="Example Gazette"></head>
<body><nav><a href="/">Home</a> <a href="/world">World</a></nav>
<article><h1>Rivers rise after record rain</h1>
<p>Rivers across the region rose to their highest level in forty years after a week of record rain, officials said.</p>
<p>Several villages were evacuated on Sunday as water reached the doors of houses near the old bridge.</p>
</article><footer>Copyright 2021 Example Gazette. All rights reserved.</footer></body></html>"""


def test_real_corpus_loads_every_article(tmp_path: Path) -> None:
    documents = load_documents(CORPUS)
    assert sorted(d.source for d in documents) == sorted(GOLD)
    for document in documents:
        assert list(document.paragraphs) == GOLD[document.source]["paragraphs"]
        assert document.doc_id == document.source.removesuffix(".txt")
        assert len(document.checksum) == 64


def test_finds_supported_files_recursively_and_skips_others(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "nested" / "deeper" / "b.md").write_text(PROSE)
    (tmp_path / "nested" / "c.HTM").write_text(HTML_PAGE)
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.txt").write_text(PROSE)
    (tmp_path / "a.meta.json").write_text("{}")
    sources = [f.source for f in find_corpus_files(tmp_path)]
    assert sources == ["a.txt", "nested/c.HTM", "nested/deeper/b.md"]
    assert [d.doc_id for d in load_documents(tmp_path)] == ["a", "nested/c", "nested/deeper/b"]


def test_html_goes_through_the_extractor_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(HTML_PAGE)
    [document] = load_documents(tmp_path)
    assert document.title == "Rivers rise after record rain"
    assert (document.author, document.date, document.outlet) == ("Mina Park", "2021-05-06", "Example Gazette")
    assert document.paragraphs[0].startswith("Rivers across the region rose")
    assert not any("Home" in p or "Copyright" in p for p in document.paragraphs)


def test_markdown_heading_is_the_title(tmp_path: Path) -> None:
    (tmp_path / "note.md").write_text(f"# My notes\n\n{PROSE}\n\n## Details\n\nshort line\n")
    [document] = load_documents(tmp_path)
    assert document.title == "My notes"
    assert document.paragraphs == (PROSE, "Details", "short line")


def test_sidecar_adds_facts_not_in_the_text(tmp_path: Path) -> None:
    (tmp_path / "story.txt").write_text(f"A headline of some words\n\n{PROSE}")
    (tmp_path / "story.meta.json").write_text(json.dumps({"url": "https://example.org/story", "outlet": "Gazette"}))
    [document] = load_documents(tmp_path)
    assert (document.title, document.url, document.outlet) == (
        "A headline of some words",
        "https://example.org/story",
        "Gazette",
    )


def test_editing_the_sidecar_changes_the_checksum(tmp_path: Path) -> None:
    (tmp_path / "story.txt").write_text(PROSE)
    before = find_corpus_files(tmp_path)[0].checksum
    (tmp_path / "story.meta.json").write_text(json.dumps({"date": "2020-01-01"}))
    assert find_corpus_files(tmp_path)[0].checksum != before


def test_unreadable_files_are_skipped_with_a_warning_naming_them_and_why(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(PROSE)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    (tmp_path / "image.html").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(2048))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "menu.txt").write_text("Home\nNews\nLogin\n")
    (tmp_path / "bad.txt").write_text(PROSE)
    (tmp_path / "bad.meta.json").write_text("{not json")
    with pytest.warns(SkippedFileWarning) as caught:
        documents = load_documents(tmp_path)
    assert [d.source for d in documents] == ["good.txt"]
    reasons = {str(w.message).split(":")[0].removeprefix("skipped "): str(w.message) for w in caught}
    assert set(reasons) == {"bad.txt", "binary.txt", "empty.txt", "image.html", "menu.txt"}
    assert "binary data" in reasons["image.html"] and "empty" in reasons["empty.txt"]
    assert "no article text" in reasons["menu.txt"] and "not valid JSON" in reasons["bad.txt"]


# A Korean article as a Korean outlet's page saves it (EUC-KR; CP949 adds syllables such as "똠").
KOREAN_TITLE = "재입북 탈북민 올해 늘어"
KOREAN_PARAGRAPHS = (
    "통일부는 올해 들어 북한으로 다시 돌아간 탈북민이 지난해보다 늘었다고 밝혔다.",
    "전문가들은 남한 사회에 적응하지 못하거나 북에 남은 가족이 걱정되어 돌아가는 경우가 많다고 말했다.",
    "북한 당국은 재입북한 탈북민을 선전 매체에 내세워 남한 생활의 어려움을 강조하고 “똠방각하”라고 불렀다.",
)
WESTERN_PARAGRAPHS = (
    "Les réfugiés nord-coréens qui retournent au Nord expliquent souvent leur décision par la famille restée là-bas.",
    "« C'est très difficile », a déclaré un fonctionnaire du ministère de l'Unification à Séoul, près du fleuve.",
)


def test_files_in_legacy_encodings_are_decoded_and_the_encoding_recorded(tmp_path: Path) -> None:
    article = "\n\n".join((KOREAN_TITLE, *KOREAN_PARAGRAPHS))
    (tmp_path / "korean.txt").write_bytes(article.encode("cp949"))
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=euc-kr">'
        f"<title>{KOREAN_TITLE}</title></head><body><article><h1>{KOREAN_TITLE}</h1>"
        + "".join(f"<p>{paragraph}</p>" for paragraph in KOREAN_PARAGRAPHS)
        + "</article></body></html>"
    )
    (tmp_path / "korean.html").write_bytes(page.encode("cp949"))
    (tmp_path / "french.txt").write_bytes(
        "\n\n".join(("Le retour des réfugiés", *WESTERN_PARAGRAPHS)).encode("latin-1")
    )
    (tmp_path / "utf8.txt").write_text(PROSE, encoding="utf-8")

    documents = {d.source: d for d in load_documents(tmp_path)}
    assert {source: d.encoding for source, d in documents.items()} == {
        "french.txt": "cp1252",
        "korean.html": "cp949",
        "korean.txt": "cp949",
        "utf8.txt": "utf-8",
    }
    assert documents["korean.txt"].paragraphs == KOREAN_PARAGRAPHS
    assert documents["korean.txt"].title == documents["korean.html"].title == KOREAN_TITLE
    assert documents["korean.html"].paragraphs == KOREAN_PARAGRAPHS
    assert documents["french.txt"].paragraphs == WESTERN_PARAGRAPHS


PROSE_DEEP = "Lakes across the region rose as well, and boats were moored in the streets of the old town."
PROSE_AFTER = "Seas rose too, and the harbour master closed the port for the rest of the week, officials said."


def nested_page(depth: int) -> str:
    """A page whose second paragraph sits ``depth`` elements deep (as broken page builders write them)."""
    return (
        "<html><head><title>Rivers rise after record rain</title><script>var hidden = 1;</script></head><body>"
        f"<p>{PROSE}</p>"
        + "<div>" * depth
        + f"<p>{PROSE_DEEP}</p>"
        + "</div>" * depth
        + f"<p>{PROSE_AFTER}</p></body></html>"
    )


def test_deeply_nested_html_is_read_as_plain_text_with_a_warning(tmp_path: Path) -> None:
    # lxml stops building the tree 256 elements deep and drops the rest without
    # a word: the extractor would see the first paragraph only.
    (tmp_path / "deep.html").write_text(nested_page(5_000))
    with pytest.warns(PlainTextFallbackWarning, match=r"deep\.html.*Excessive depth"):
        [document] = load_documents(tmp_path)
    assert document.paragraphs == (PROSE, PROSE_DEEP, PROSE_AFTER)
    assert document.title == "Rivers rise after record rain"
    assert not any("hidden" in paragraph for paragraph in document.paragraphs)


def test_a_page_the_extractor_fails_on_is_read_as_plain_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("trafilatura.bare_extraction", broken)
    (tmp_path / "page.html").write_text(HTML_PAGE)
    with pytest.warns(PlainTextFallbackWarning, match=r"page\.html.*RecursionError"):
        [document] = load_documents(tmp_path)
    assert document.paragraphs[0].startswith("Rivers across the region rose")


def test_an_unexpected_error_in_one_file_skips_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qa.ingest.corpus

    real_clean_text = qa.ingest.corpus.clean_text

    def clean_text(raw: str) -> CleanedText:
        if "explode" in raw:
            raise ValueError("a bug in the cleaner")
        return real_clean_text(raw)

    monkeypatch.setattr("qa.ingest.corpus.clean_text", clean_text)
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "b.txt").write_text(f"{PROSE} It may explode.")
    (tmp_path / "c.txt").write_text(PROSE_AFTER)
    with pytest.warns(SkippedFileWarning, match=r"skipped b\.txt: unexpected ValueError .*a bug in the cleaner"):
        documents = load_documents(tmp_path)
    assert [d.source for d in documents] == ["a.txt", "c.txt"]


def test_corpus_fingerprint_follows_file_names_and_contents_not_listing_order(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "b.txt").write_text(PROSE_DEEP)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.md").write_text(PROSE_AFTER)
    files = find_corpus_files(tmp_path)
    fingerprint = corpus_fingerprint(files)
    assert len(fingerprint) == 64
    assert {corpus_fingerprint(list(order)) for order in itertools.permutations(files)} == {fingerprint}

    (tmp_path / "b.txt").write_text(f"{PROSE_DEEP} One more sentence.")  # content
    edited = corpus_fingerprint(find_corpus_files(tmp_path))
    (tmp_path / "b.txt").write_text(PROSE_DEEP)
    assert edited != fingerprint
    assert corpus_fingerprint(find_corpus_files(tmp_path)) == fingerprint  # same files again, same fingerprint

    (tmp_path / "b.txt").rename(tmp_path / "d.txt")  # name, same content
    renamed = corpus_fingerprint(find_corpus_files(tmp_path))
    assert renamed not in {fingerprint, edited}

    (tmp_path / "d.txt").rename(tmp_path / "b.txt")
    (tmp_path / "a.txt").write_text(PROSE_DEEP)  # the same contents under swapped names
    (tmp_path / "b.txt").write_text(PROSE)
    swapped = corpus_fingerprint(find_corpus_files(tmp_path))
    assert swapped not in {fingerprint, edited, renamed}


def test_missing_corpus_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QAError, match="corpus folder not found"):
        load_documents(tmp_path / "nowhere")


def test_a_file_that_cannot_be_opened_is_skipped_when_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qa.ingest.corpus

    real_checksum = qa.ingest.corpus.file_checksum

    def file_checksum(path: Path) -> str:
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_checksum(path)

    monkeypatch.setattr("qa.ingest.corpus.file_checksum", file_checksum)
    (tmp_path / "locked.txt").write_text(PROSE)
    (tmp_path / "open.txt").write_text(PROSE)
    with pytest.warns(SkippedFileWarning, match=r"skipped locked\.txt: .*Permission denied"):
        assert [f.source for f in find_corpus_files(tmp_path)] == ["open.txt"]
