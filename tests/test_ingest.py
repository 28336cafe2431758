"""Finding and reading corpus files: types, folders, sidecars, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CORPUS, GOLD
from qa.errors import QAError
from qa.ingest import SkippedFileWarning, find_corpus_files, load_documents

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


def test_unreadable_files_are_skipped_with_a_warning_naming_them(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(PROSE)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    (tmp_path / "menu.txt").write_text("Home\nNews\nLogin\n")
    (tmp_path / "bad.txt").write_text(PROSE)
    (tmp_path / "bad.meta.json").write_text("{not json")
    with pytest.warns(SkippedFileWarning) as caught:
        documents = load_documents(tmp_path)
    assert [d.source for d in documents] == ["good.txt"]
    messages = " ".join(str(w.message) for w in caught)
    assert "binary.txt" in messages and "menu.txt" in messages and "bad.txt" in messages


def test_missing_corpus_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QAError, match="corpus folder not found"):
        load_documents(tmp_path / "nowhere")
