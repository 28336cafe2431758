"""Finding and reading corpus files: types, folders, sidecars, unreadable files."""

from __future__ import annotations

import codecs
import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS, GOLD
from qa.errors import QAError
from qa.ingest.clean import CleanedText
from qa.ingest.corpus import MetadataWarning, PlainTextFallbackWarning, load_documents
from qa.ingest.folders import SkippedFileWarning
from qa.ingest.listing import CorpusListing, CorpusStamps, corpus_fingerprint, find_corpus_files, list_corpus

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
        assert document.doc_id == document.source  # the path with its suffix: story.txt and story.md differ
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
    assert [d.doc_id for d in load_documents(tmp_path)] == ["a.txt", "nested/c.HTM", "nested/deeper/b.md"]


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
    import qa.ingest.listing

    real_checksum = qa.ingest.listing.file_checksum

    def file_checksum(path: Path, sidecar: Path | None = None) -> str:
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_checksum(path, sidecar)

    monkeypatch.setattr("qa.ingest.listing.file_checksum", file_checksum)
    (tmp_path / "locked.txt").write_text(PROSE)
    (tmp_path / "open.txt").write_text(PROSE)
    with pytest.warns(SkippedFileWarning, match=r"skipped locked\.txt: .*Permission denied"):
        assert [f.source for f in find_corpus_files(tmp_path)] == ["open.txt"]


# --- issue 12: folders that cannot be listed, sidecar values, symbolic links ---------------------


def test_a_subfolder_that_cannot_be_listed_is_skipped_with_a_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked" / "deeper").mkdir(parents=True)
    (tmp_path / "locked" / "deeper" / "a.txt").write_text(PROSE)
    (tmp_path / "open.txt").write_text(PROSE)
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        # Tests run as root here, which chmod cannot lock out.
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(SkippedFileWarning, match=r"^skipped folder locked/: cannot list it \(Permission denied\)$"):
        assert [f.source for f in find_corpus_files(tmp_path)] == ["open.txt"]


def test_a_corpus_folder_that_cannot_be_listed_is_an_error_not_an_empty_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.txt").write_text(PROSE)
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(QAError, match=r"cannot list the corpus folder .*\(Permission denied\): make it readable"):
        find_corpus_files(tmp_path)


def test_files_are_listed_in_path_order_as_before(tmp_path: Path) -> None:
    for name in ("b.txt", "a b/x.txt", "a/x.txt", "a-c.txt", "A.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(PROSE)
    assert [f.source for f in find_corpus_files(tmp_path)] == [
        str(p.relative_to(tmp_path)) for p in sorted(tmp_path.rglob("*.txt"))
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("date", 12345, "it should be text, not a number"),
        ("date", "9999-99-99", "'9999-99-99' is not a date (write it as 2020-08-02)"),
        ("date", "2021-02-30", "'2021-02-30' is not a date (write it as 2020-08-02)"),
        ("outlet", ["Daily NK", "RFA"], "it should be text, not a list"),
        ("author", {"name": "Kim"}, "it should be text, not an object"),
        ("title", True, "it should be text, not true or false"),
        ("title", "Headline " * 1_200, "10,799 characters, more than the 500 a title may have"),
        ("url", "javascript:alert(1)", "'javascript:alert(1)' is not a web address (https://...)"),
    ],
)
def test_a_sidecar_value_of_the_wrong_type_or_shape_is_a_warning_and_left_empty(
    tmp_path: Path, field: str, value: object, problem: str
) -> None:
    (tmp_path / "news").mkdir()
    (tmp_path / "news" / "story.txt").write_text(PROSE)
    sidecar = {"outlet": "Gazette", "url": "https://example.org/story", field: value}
    (tmp_path / "news" / "story.meta.json").write_text(json.dumps(sidecar))
    with pytest.warns(MetadataWarning) as caught:
        [document] = load_documents(tmp_path)
    assert [str(w.message) for w in caught] == [f'news/story.meta.json: ignored "{field}": {problem}']
    assert getattr(document, field) == ""
    assert {"outlet": document.outlet, "url": document.url} == {
        name: "" if name == field else sidecar[name] for name in ("outlet", "url")
    }


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2021-03-03", "2021-03-03"),
        ("2021-03-03T09:15:00+09:00", "2021-03-03T09:15:00+09:00"),
        ("March 3, 2021", "2021-03-03"),
        ("  2021-03-03 ", "2021-03-03"),
    ],
)
def test_sidecar_dates_are_kept_or_written_as_iso_dates(tmp_path: Path, value: str, stored: str) -> None:
    (tmp_path / "story.txt").write_text(PROSE)
    sidecar = json.dumps({"date": value, "title": "  Two\nlines \x1b[31mred\x07"})
    (tmp_path / "story.meta.json").write_bytes(codecs.BOM_UTF8 + sidecar.encode())
    [document] = load_documents(tmp_path)
    assert (document.date, document.title) == (stored, "Two lines [31mred")


def test_a_link_to_a_file_outside_the_corpus_is_not_followed_unless_asked(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir()
    outside.mkdir()
    (outside / "passwd.txt").write_text(PROSE_DEEP)
    (outside / "folder").mkdir()
    (outside / "folder" / "more.txt").write_text(PROSE_AFTER)
    (corpus / "own.txt").write_text(PROSE)
    (corpus / "passwd.txt").symlink_to(outside / "passwd.txt")
    (corpus / "linked").symlink_to(outside / "folder")
    with pytest.warns(SkippedFileWarning) as caught:
        assert [f.source for f in find_corpus_files(corpus)] == ["own.txt"]
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"skipped {name}: a symbolic link to {target}, outside the corpus folder; links out of the corpus "
        "are followed only when asked (`qa index --follow-links`)"
        for name, target in (("linked", outside / "folder"), ("passwd.txt", outside / "passwd.txt"))
    ]
    followed = find_corpus_files(corpus, follow_links=True)
    assert [f.source for f in followed] == ["linked/more.txt", "own.txt", "passwd.txt"]


def test_a_sidecar_linked_from_outside_the_corpus_is_not_read(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (tmp_path / "secret.json").write_text(json.dumps({"title": "A secret title"}))
    (corpus / "story.txt").write_text(PROSE)
    (corpus / "story.meta.json").symlink_to(tmp_path / "secret.json")
    with pytest.warns(SkippedFileWarning, match=r"skipped story\.meta\.json: a symbolic link to .*outside"):
        [document] = load_documents(corpus)
    assert document.title == ""


def test_a_dangling_link_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / "archive").symlink_to("/mnt/unmounted/archive")
    (tmp_path / "x.txt").symlink_to("y.txt")
    (tmp_path / "y.txt").symlink_to("x.txt")
    with pytest.warns(SkippedFileWarning) as caught:
        assert [f.source for f in find_corpus_files(tmp_path)] == ["a.txt"]
    assert sorted(str(w.message) for w in caught) == [
        "skipped archive: a symbolic link to /mnt/unmounted/archive, which does not exist",
        f"skipped gone.txt: a symbolic link to {tmp_path / 'nowhere.txt'}, which does not exist",
        "skipped x.txt: a symbolic link in a loop of links",
        "skipped y.txt: a symbolic link in a loop of links",
    ]


def test_links_inside_the_corpus_are_followed_and_no_file_is_read_twice(tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "story.txt").write_text(PROSE)
    (tmp_path / "a-latest").symlink_to(tmp_path / "2024")  # sorts before the folder it names
    (tmp_path / "again.txt").symlink_to(tmp_path / "2024" / "story.txt")
    (tmp_path / "2024" / "loop").symlink_to(tmp_path)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "other.md").write_text(PROSE_DEEP)
    (tmp_path / "relative.md").symlink_to("z/other.md")
    (tmp_path / "only-by-link.txt").symlink_to("z/../2024/../z/other.md")
    (tmp_path / "z" / "real.txt").write_text(PROSE_AFTER)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "link.txt").symlink_to(tmp_path / "z" / "real.txt")
    with pytest.warns(SkippedFileWarning) as caught:
        files = find_corpus_files(tmp_path)
    assert [f.source for f in files] == ["2024/story.txt", "z/other.md", "z/real.txt"]
    assert sorted(str(w.message) for w in caught) == [
        "skipped 2024/loop/: the same folder as the corpus folder",
        "skipped a-latest/: the same folder as 2024/",
        "skipped again.txt: the same file as 2024/story.txt",
        "skipped only-by-link.txt: the same file as z/other.md",
        "skipped relative.md: the same file as z/other.md",
        "skipped y/link.txt: the same file as z/real.txt",
    ]


def test_a_file_with_two_names_is_listed_once_by_the_first_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text(PROSE)
    (tmp_path / "a").mkdir()
    os.link(tmp_path / "b.txt", tmp_path / "a" / "again.txt")  # a hard link: no symbolic link anywhere
    (tmp_path / "c.txt").write_text(PROSE_DEEP)
    with pytest.warns(SkippedFileWarning) as caught:
        assert [f.source for f in find_corpus_files(tmp_path)] == ["a/again.txt", "c.txt"]
    assert [str(w.message) for w in caught] == ["skipped b.txt: the same file as a/again.txt"]


def aged(path: Path, seconds: float = 60) -> None:
    """Give ``path`` a modification time ``seconds`` ago: older than any listing's racy window."""
    past = path.stat().st_mtime - seconds
    os.utime(path, (past, past))


class CountingChecksums:
    """``file_checksum`` that records which files it read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import qa.ingest.listing

        self.real = qa.ingest.listing.file_checksum
        self.read: list[str] = []
        monkeypatch.setattr("qa.ingest.listing.file_checksum", self)

    def __call__(self, path: Path, sidecar: Path | None = None) -> str:
        self.read.append(path.name)
        return self.real(path, sidecar)


def stamped_listing(corpus: Path) -> tuple[CorpusListing, CorpusStamps]:
    listing = list_corpus(corpus)
    return listing, listing.stamps


def test_files_whose_stamps_hold_are_not_read_again_and_keep_their_checksums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, text in (("a.txt", PROSE), ("b.txt", PROSE_DEEP), ("c.md", PROSE_AFTER)):
        (tmp_path / name).write_text(text)
        aged(tmp_path / name)
    (tmp_path / "c.meta.json").write_text(json.dumps({"outlet": "Gazette"}))
    aged(tmp_path / "c.meta.json")
    listing, stamps = stamped_listing(tmp_path)
    counting = CountingChecksums(monkeypatch)
    again = list_corpus(tmp_path, stamps=stamps)
    assert counting.read == []
    assert again.files() == listing.files()
    assert again.from_stamps  # nothing to record
    assert not listing.from_stamps  # listed without stamps: every file was read


@pytest.mark.parametrize(
    "change",
    [
        "same size, new time",
        "new inode",
        "sidecar",
        "sidecar edited",
        "sidecar removed",
        "new file",
        "removed file",
        "racy",
    ],
)
def test_a_changed_stamp_reads_that_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    (tmp_path / "a.txt").write_text(PROSE)
    (tmp_path / "b.txt").write_text(PROSE_DEEP)
    (tmp_path / "a.meta.json").write_text(json.dumps({"outlet": "Herald"}))
    for name in ("a.txt", "b.txt", "a.meta.json"):
        aged(tmp_path / name)
    before, stamps = stamped_listing(tmp_path)
    b = tmp_path / "b.txt"
    if change == "same size, new time":
        b.write_text(PROSE_DEEP.replace("Lakes", "LAKES"))  # the same length: only the time shows it
    elif change == "new inode":  # an editor's save: a new file renamed over the old, its time kept
        status = b.stat()
        (tmp_path / "b.new").write_text(PROSE_DEEP.replace("Lakes", "Ponds"))
        os.utime(tmp_path / "b.new", ns=(status.st_atime_ns, status.st_mtime_ns))
        os.replace(tmp_path / "b.new", b)
    elif change == "sidecar":
        (tmp_path / "b.meta.json").write_text(json.dumps({"outlet": "Herald"}))
    elif change == "sidecar edited":  # the same size: only the time shows it
        (tmp_path / "a.meta.json").write_text(json.dumps({"outlet": "HERALD"}))
    elif change == "sidecar removed":
        (tmp_path / "a.meta.json").unlink()
    elif change == "new file":
        (tmp_path / "b2.txt").write_text(PROSE)
    elif change == "removed file":
        b.unlink()
    elif change == "racy":  # stamped within the racy window: a second edit may not show in the time
        b.write_text(PROSE_DEEP.replace("Lakes", "LAKES"))
        before, stamps = stamped_listing(tmp_path)
    counting = CountingChecksums(monkeypatch)
    again = list_corpus(tmp_path, stamps=stamps)
    expected = {"new file": ["b2.txt"], "removed file": [], "sidecar edited": ["a.txt"], "sidecar removed": ["a.txt"]}
    assert counting.read == expected.get(change, ["b.txt"])
    assert (again.fingerprint() == before.fingerprint()) == (change == "racy")  # nothing changed since, there
    assert again.fingerprint() == corpus_fingerprint(find_corpus_files(tmp_path))  # as if read afresh
    assert not again.from_stamps  # the stamps are recorded again


def test_stamps_of_another_corpus_folder_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.txt").write_text(PROSE if folder == "one" else PROSE_DEEP)
        aged(tmp_path / folder / "a.txt")
    _, stamps = stamped_listing(tmp_path / "one")
    counting = CountingChecksums(monkeypatch)
    find_corpus_files(tmp_path / "two", stamps=stamps)
    assert counting.read == ["a.txt"]
