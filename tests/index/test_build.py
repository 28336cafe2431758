"""index_corpus and index_documents: incremental updates on a copy of the real corpus, counted at the encoder."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import DAMAGES, GOLD, FakeEncoder, FakeModelEncoder, IndexWorker, RefusingEncoder, damage_index
from index_worker import BATCH as WORKER_BATCH
from index_worker import POINTS
from qa.cli import main as cli_main
from qa.errors import REBUILD, IndexCorruptError, QAError
from qa.index.build import (
    MIN_WORDS,
    SPLIT_VERSION,
    index_corpus,
    index_documents,
    open_index,
    settings_for,
)
from qa.index.embeddings import CACHE_NAME
from qa.index.local import LocalIndex
from qa.index.lock import LOCK_NAME
from qa.index.manifest import MANIFEST_NAME, STAMPS_NAME, IndexSettings, read_manifest
from qa.index.prepare import IndexReport
from qa.ingest.clean import CleanedText
from qa.ingest.corpus import SkippedFileWarning
from qa.ingest.split import split_passages
from qa.records import PARAGRAPH_SEPARATOR, Document, Passage
from qa.search.query import embed_query
from qa.search.retrieval import retrieve

SETTINGS = IndexSettings(max_tokens=254, min_words=12)
KOREA_TIMES = "koreatimes-why-do-nk-defectors-flee-to-destitute-north.txt"
NEW_ARTICLE = """A new headline about the border

Villagers near the river said soldiers had doubled their patrols along the border this spring.

Traders told reporters that smuggling of phones and medicine had almost stopped since the winter.
"""


def indexed_texts(index: LocalIndex) -> list[str]:
    """Every text a build embeds for ``index``: its passages and their sentences, each once."""
    sentences = index.sentences_of([p.passage_id for p in index.passages])
    texts = {p.text for p in index.passages}
    texts.update(text for p, found in zip(index.passages, sentences, strict=True) for text in found.texts(p.text))
    return list(texts)


def run(corpus: Path, index: Path, encoder: FakeEncoder, *, rebuild: bool = False) -> IndexReport:
    return index_corpus(corpus, index, encoder=encoder, settings=SETTINGS, rebuild=rebuild)


def test_first_build_indexes_every_article(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    report = run(corpus_copy, tmp_path / "index", encoder)
    index = open_index(tmp_path / "index")
    assert (report.documents, report.added, report.changed, report.removed) == (5, 5, 0, 0)
    assert report.passages == len(index.passages) == report.embedded
    # Each passage and each of its sentences embedded once; a one-sentence passage is both.
    assert sorted(encoder.encoded) == sorted(indexed_texts(index))
    assert report.sentences_embedded == len(set(indexed_texts(index)) - {p.text for p in index.passages})


def test_passages_hold_every_article_paragraph_and_no_boilerplate(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    index = open_index(tmp_path / "index")
    for source, gold in GOLD.items():
        pieces = [
            piece
            for passage in index.passages
            if passage.source == source
            for piece in passage.text.split(PARAGRAPH_SEPARATOR)
        ]
        assert pieces == gold["paragraphs"]
    document_texts = {d.doc_id: d.text for d in index.documents_with_text}
    for passage in index.passages:
        assert document_texts[passage.doc_id][passage.start : passage.end] == passage.text


def test_attribution_travels_with_each_passage(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    passages = [p for p in open_index(tmp_path / "index").passages if p.source == KOREA_TIMES]
    gold = GOLD[KOREA_TIMES]
    assert {(p.title, p.outlet, p.author, p.date) for p in passages} == {
        (gold["title"], gold["outlet"], gold["author"], gold["date"])
    }
    assert [p.paragraph for p in passages] == sorted(p.paragraph for p in passages)
    assert passages[0].paragraph == 1


def test_nothing_changed_never_touches_the_encoder(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    report = run(corpus_copy, tmp_path / "index", RefusingEncoder())
    assert report.unchanged
    assert read_manifest(tmp_path / "index") == before


def test_added_changed_and_deleted_files(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    index_dir = tmp_path / "index"
    run(corpus_copy, index_dir, encoder)

    (corpus_copy / "new").mkdir()
    (corpus_copy / "new" / "border.txt").write_text(NEW_ARTICLE)
    added = FakeEncoder()
    report = run(corpus_copy, index_dir, added)
    assert (report.added, report.changed, report.removed) == (1, 0, 0)
    assert added.encoded and all(text in NEW_ARTICLE for text in added.encoded)

    article = corpus_copy / KOREA_TIMES
    article.write_text(article.read_text().replace("three broad groups", "three wide groups"))
    changed = FakeEncoder()
    report = run(corpus_copy, index_dir, changed)
    assert (report.added, report.changed, report.removed) == (0, 1, 0)
    # The changed passage and its changed sentence; its other sentences are in the cache.
    assert len(changed.encoded) == 2 and all("three wide groups" in text for text in changed.encoded)

    (corpus_copy / KOREA_TIMES).unlink()
    report = run(corpus_copy, index_dir, RefusingEncoder())
    assert (report.added, report.changed, report.removed) == (0, 0, 1)
    index = open_index(index_dir)
    assert KOREA_TIMES not in {p.source for p in index.passages}
    everything = len(index.passages) + 10  # the vectors and the BM25 index forgot it too
    query = "three wide groups of reasons"
    for found in (
        index.dense_candidates(embed_query(encoder, query), depth=everything, where=None),
        index.bm25_candidates(query, depth=everything, where=None),
    ):
        assert sorted(found.ids) == sorted(p.passage_id for p in index.passages)
        assert KOREA_TIMES not in {p.source for p in index.passages_by_id(found.ids)}


def test_another_model_rebuilds_everything(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    other = FakeEncoder("other-model")
    report = run(corpus_copy, tmp_path / "index", other)
    assert "model changed" in report.rebuilt_reason
    assert sorted(other.encoded) == sorted(indexed_texts(open_index(tmp_path / "index")))
    assert read_manifest(tmp_path / "index").model == "other-model"


def test_rebuild_re_embeds_everything(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    again = FakeEncoder()
    run(corpus_copy, tmp_path / "index", again, rebuild=True)
    assert sorted(again.encoded) == sorted(indexed_texts(open_index(tmp_path / "index")))


def test_changing_settings_re_splits_but_reuses_vectors(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    finer = IndexSettings(max_tokens=40, min_words=12)
    recount = FakeEncoder()
    index_corpus(corpus_copy, tmp_path / "index", encoder=recount, settings=finer)
    index = open_index(tmp_path / "index")
    assert index.manifest.settings == finer
    assert max(len(p.text.split()) for p in index.passages) <= 40
    assert 0 < len(recount.encoded) < len(index.passages)  # unchanged short paragraphs keep their vectors


class InterruptingEncoder(FakeEncoder):
    """Embeds a few batches, then behaves like Ctrl-C."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(self.calls) == self.batches:
            raise KeyboardInterrupt
        return super().encode(texts)


def test_interrupted_build_keeps_old_index_and_resumes(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qa.index.embeddings.EMBED_BATCH_SIZE", 4)
    index_dir = tmp_path / "index"
    shutil.move(corpus_copy / KOREA_TIMES, tmp_path / KOREA_TIMES)
    run(corpus_copy, index_dir, encoder)
    before = open_index(index_dir).passages
    shutil.move(tmp_path / KOREA_TIMES, corpus_copy / KOREA_TIMES)

    with pytest.raises(KeyboardInterrupt):
        run(corpus_copy, index_dir, InterruptingEncoder(batches=2))
    assert open_index(index_dir).passages == before

    resumed = FakeEncoder()
    report = run(corpus_copy, index_dir, resumed)
    # The two batches embedded before the interruption were kept in the cache.
    assert report.embedded == report.passages - len(before) - 8
    assert report.embedded + report.sentences_embedded == len(resumed.encoded)


# What a build killed at each point leaves behind besides the index (fnmatch), proving where it died.
LEFT_BY_KILL = {
    "embedding": None,
    "cache-transaction": "embeddings.sqlite-journal",
    "passages-half-written": ".passages-*.tmp",
    "vectors-before-rename": ".vectors-*.tmp",
    "bm25-before-rename": ".bm25-*.tmp",
    "manifest-before-rename": ".manifest.json.*.tmp",
    "manifest-after-rename": "documents-*.sqlite",  # the previous generation, not yet removed
}


def cache_rows(index_dir: Path) -> int:
    with sqlite3.connect(index_dir / CACHE_NAME) as database:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(database.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


def stray_files(index_dir: Path) -> set[str]:
    manifest = read_manifest(index_dir)
    ours = {*manifest.files.values(), MANIFEST_NAME, CACHE_NAME, LOCK_NAME, STAMPS_NAME}
    return {p.name for p in index_dir.iterdir()} - ours


@pytest.mark.parametrize("point", POINTS)
def test_a_build_killed_at_any_point_leaves_an_index_that_answers(
    point: str, corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("qa.index.build.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.delenv("QA_MODEL", raising=False)
    index_dir = tmp_path / "index"
    command = ["index", "--corpus", str(corpus_copy), "--index", str(index_dir), "--wait", "0"]
    shutil.move(corpus_copy / KOREA_TIMES, tmp_path / KOREA_TIMES)
    assert cli_main(command) == 0
    previous = open_index(index_dir).passages
    rows_before = cache_rows(index_dir)
    shutil.move(tmp_path / KOREA_TIMES, corpus_copy / KOREA_TIMES)

    worker = IndexWorker(corpus_copy, index_dir, pause=point)  # a real `qa index` process, SIGKILLed at `point`
    worker.wait_for(f"PAUSED {point}")
    worker.sigkill()

    left = stray_files(index_dir)
    pattern = LEFT_BY_KILL[point]
    assert any(fnmatch.fnmatch(name, pattern) for name in left) if pattern else not left
    survivor = open_index(index_dir)
    assert retrieve(survivor, "Why do defectors return?", encoder=FakeEncoder(survivor.model), k=3)
    rows_after_kill = cache_rows(index_dir)  # SQLite rolls back a batch cut off mid-commit
    if point in {"embedding", "cache-transaction"}:
        assert rows_after_kill == rows_before + 2 * WORKER_BATCH

    capsys.readouterr()
    assert cli_main(command) == 0  # a killed build leaves no lock behind: --wait 0 would refuse
    out = capsys.readouterr().out
    current = open_index(index_dir).passages
    assert KOREA_TIMES in {p.source for p in current} and KOREA_TIMES not in {p.source for p in previous}
    assert survivor.passages == (current if point == "manifest-after-rename" else previous)
    embedded = cache_rows(index_dir) - rows_after_kill  # what the killed run had embedded is not embedded again
    passages, sentences = (int(n) for n in re.findall(r"(\d+) passages and (\d+) sentences embedded", out)[0])
    assert passages + sentences == embedded and passages < len(current) - len(previous)
    assert not stray_files(index_dir)


# --- bad files in the corpus ------------------------------------------------------

KOREAN_ARTICLE = """재입북 탈북민 올해 늘어

통일부는 올해 들어 북한으로 다시 돌아간 탈북민이 지난해보다 늘었다고 밝혔다.

전문가들은 남한 사회에 적응하지 못하거나 북에 남은 가족이 걱정되어 돌아가는 경우가 많다고 말했다.
"""
DEEP_PROSE = "Lakes across the region rose as well, and boats were moored in the streets of the old town."


def add_bad_files(corpus: Path) -> None:
    """Files a scraped corpus gathers: empty, binary, legacy-encoded, broken HTML, boilerplate only."""
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "scan.txt").write_bytes(b"%PDF-1.4\n" + b"\x00\x01\x02stream\x00" * 500)
    (corpus / "korean.txt").write_bytes(KOREAN_ARTICLE.encode("euc-kr"))
    (corpus / "deep.html").write_text(
        "<html><body>" + "<div>" * 5_000 + f"<p>{DEEP_PROSE}</p>" + "</div>" * 5_000 + "</body></html>"
    )
    (corpus / "menu.txt").write_text("Home\nNews\nLogin\nSubscribe\n")


def test_bad_files_are_skipped_or_decoded_and_the_rest_is_indexed(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    add_bad_files(corpus_copy)
    with pytest.warns(UserWarning) as caught:
        report = run(corpus_copy, tmp_path / "index", encoder)
    index = open_index(tmp_path / "index")
    sources = {d.source for d in index.documents}
    assert sources == {*GOLD, "korean.txt", "deep.html"}
    assert (report.documents, report.skipped) == (7, 3)
    assert report.decoded == (("korean.txt", "cp949"),)
    messages = [str(w.message) for w in caught]
    for name, reason in [("empty.txt", "empty"), ("scan.txt", "binary"), ("menu.txt", "no article text")]:
        assert any(m.startswith(f"skipped {name}:") and reason in m for m in messages), name
    assert any("deep.html as plain text" in m for m in messages)
    korean = next(d for d in index.documents_with_text if d.source == "korean.txt")
    assert korean.paragraphs == tuple(KOREAN_ARTICLE.strip().split("\n\n")[1:]) and korean.encoding == "cp949"
    assert any(DEEP_PROSE in p.text for p in index.passages)


def test_an_unexpected_error_in_one_file_leaves_the_others_indexed(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qa.index.prepare
    import qa.ingest.corpus

    real_parse, real_split = qa.ingest.corpus.parse_text, qa.index.prepare.split_passages

    def parse_text(raw: str, suffix: str, *, url: str = "", source: str = "") -> CleanedText:
        if source == KOREA_TIMES:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(raw, suffix, url=url, source=source)

    def split_passages(document: Document, **options: Any) -> list[Passage]:
        if document.source.startswith("rfa-"):
            raise IndexError("list index out of range")
        return real_split(document, **options)

    monkeypatch.setattr("qa.ingest.corpus.parse_text", parse_text)
    monkeypatch.setattr("qa.index.prepare.split_passages", split_passages)
    with pytest.warns(SkippedFileWarning) as caught:
        report = run(corpus_copy, tmp_path / "index", encoder)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith(f"skipped {KOREA_TIMES}: unexpected RecursionError while reading it")
    assert messages[1].startswith("skipped rfa-") and "unexpected IndexError while splitting it" in messages[1]
    index = open_index(tmp_path / "index")
    assert {d.source for d in index.documents} == {s for s in GOLD if s != KOREA_TIMES and not s.startswith("rfa-")}
    assert (report.documents, report.skipped) == (3, 2)


# --- index_documents: passages made elsewhere (a benchmark's documents) ------------

BENCHMARK_SETTINGS = IndexSettings(max_tokens=128, min_words=1)
# The damages a build notices before it would answer "unchanged": a manifest rewritten
# consistently, checksum included, is only caught on loading (see tests/cli/test_commands.py).
FOUND_BY_A_BUILD = [damage for damage in DAMAGES if damage != "manifest and checksum edited"]


def benchmark_documents(count: int = 6) -> tuple[list[Document], list[Passage]]:
    documents = [
        Document(
            doc_id=f"d{number}",
            source=f"d{number}",
            paragraphs=(f"Claim {number} about rivers and bridges.", f"Evidence {number} from the army and a court."),
            title=f"Title {number}",
        )
        for number in range(count)
    ]
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    return documents, passages


def index_benchmark(
    index_dir: Path, encoder: FakeEncoder, *, fingerprint: str = "scifact-test", count: int = 6
) -> IndexReport:
    documents, passages = benchmark_documents(count)
    return index_documents(
        documents, passages, index_dir, fingerprint=fingerprint, encoder=encoder, settings=BENCHMARK_SETTINGS
    )


def test_index_documents_builds_an_index_of_those_passages(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents, passages = benchmark_documents()
    report = index_benchmark(tmp_path / "index", encoder)
    index = open_index(tmp_path / "index")
    assert isinstance(index, LocalIndex)
    assert (index.documents_with_text, index.passages) == (documents, passages)
    assert (report.documents, report.passages, report.added, report.skipped) == (6, len(passages), 6, 0)
    assert report.embedded == len(encoder.encoded) == len({p.text for p in passages})
    assert not report.unchanged and not report.rebuilt_reason
    manifest = read_manifest(tmp_path / "index")
    assert (manifest.corpus_fingerprint, manifest.settings, manifest.model) == (
        "scifact-test",
        BENCHMARK_SETTINGS,
        "fake-encoder",
    )


def test_index_documents_again_with_the_same_fingerprint_never_touches_the_encoder(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    index_benchmark(tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    report = index_benchmark(tmp_path / "index", RefusingEncoder())
    assert report.unchanged
    assert (report.documents, report.passages, report.embedded, report.skipped) == (6, before.passages, 0, 0)
    assert read_manifest(tmp_path / "index") == before


def test_index_documents_with_another_fingerprint_updates_and_embeds_only_what_is_new(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    index_benchmark(tmp_path / "index", encoder)
    more = FakeEncoder()
    report = index_benchmark(tmp_path / "index", more, fingerprint="scifact-bigger", count=8)
    assert (report.added, report.changed, report.removed) == (2, 0, 0)
    assert sorted(more.encoded) == sorted(p.text for p in benchmark_documents(8)[1] if p.doc_id in {"d6", "d7"})
    assert read_manifest(tmp_path / "index").corpus_fingerprint == "scifact-bigger"


@pytest.mark.parametrize("damage", FOUND_BY_A_BUILD)
def test_a_damaged_index_is_rebuilt_saying_what_was_wrong_without_the_advice_to_rebuild(
    tmp_path: Path, encoder: FakeEncoder, damage: str
) -> None:
    index_dir = tmp_path / "index"
    index_benchmark(index_dir, encoder)
    damage_index(index_dir, damage)
    with pytest.raises(IndexCorruptError) as caught:
        open_index(index_dir)
    assert str(caught.value) == f"{caught.value.problem}: {REBUILD}"  # what a person reading the index is told

    report = index_benchmark(index_dir, RefusingEncoder())  # the embedding cache survives the damage
    assert report.rebuilt_reason == caught.value.problem  # the build is the fix: it reports the problem alone
    assert "is damaged" in report.rebuilt_reason and DAMAGES[damage] in report.rebuilt_reason
    assert "--rebuild" not in report.rebuilt_reason
    assert open_index(index_dir).passages == benchmark_documents()[1]


@pytest.mark.parametrize("damage", FOUND_BY_A_BUILD)
def test_index_corpus_reports_the_damage_it_repairs_without_the_advice_to_rebuild(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, damage: str
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    damage_index(tmp_path / "index", damage)
    report = run(corpus_copy, tmp_path / "index", RefusingEncoder())
    assert "is damaged" in report.rebuilt_reason and DAMAGES[damage] in report.rebuilt_reason
    assert REBUILD not in report.rebuilt_reason and "--rebuild" not in report.rebuilt_reason
    assert len(open_index(tmp_path / "index").passages) == report.passages


# --- issue 12: no passage twice, no index emptied by a corpus that looks empty -------------------


def test_two_files_with_the_same_stem_are_two_documents_and_no_build_duplicates_them(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "story.txt").write_text(NEW_ARTICLE)
    (corpus / "story.md").write_text(
        "# Notes on the border\n\nThe patrols were counted twice a day by the villagers.\n"
    )
    counts = []
    for _ in range(3):  # every incremental build used to add both files' passages again
        run(corpus, tmp_path / "index", encoder)
        (corpus / "story.md").write_text((corpus / "story.md").read_text() + "\nMore notes on it.\n")
        index = open_index(tmp_path / "index")
        counts.append(len(index.passages))
        assert sorted(d.doc_id for d in index.documents) == ["story.md", "story.txt"]
        assert len({p.passage_id for p in index.passages}) == len(index.passages)
    assert counts == [3, 3, 3]


@pytest.mark.parametrize("twice", ["document", "passage"])
def test_a_build_that_would_hold_a_passage_twice_is_refused_and_saves_nothing(
    tmp_path: Path, encoder: FakeEncoder, twice: str
) -> None:
    index_benchmark(tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    documents, passages = benchmark_documents()
    if twice == "document":
        documents.append(documents[0])
    else:
        passages.append(passages[2])
    with pytest.raises(QAError, match=f"would hold {twice} '{'d0' if twice == 'document' else 'd1#p1-'}"):
        index_documents(
            documents, passages, tmp_path / "index", fingerprint="new", encoder=encoder, settings=BENCHMARK_SETTINGS
        )
    assert read_manifest(tmp_path / "index") == before


def test_a_new_split_version_re_splits_every_index_without_embedding_again(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    old = IndexSettings(max_tokens=254, min_words=MIN_WORDS, pipeline_version=1)
    index_corpus(corpus_copy, tmp_path / "index", encoder=encoder, settings=old)
    settings, _count = settings_for(FakeModelEncoder())  # type: ignore[arg-type]
    assert settings.pipeline_version == SPLIT_VERSION > 1 and not settings.splits_like(old)
    report = index_corpus(corpus_copy, tmp_path / "index", encoder=RefusingEncoder(), settings=settings)
    assert report.embedded == 0 and report.passages == len(open_index(tmp_path / "index").passages)
    assert read_manifest(tmp_path / "index").settings.pipeline_version == SPLIT_VERSION
    # Rewritten, not "up to date": the person is told the index changed.
    assert report.resplit and not report.unchanged
    again = index_corpus(corpus_copy, tmp_path / "index", encoder=RefusingEncoder(), settings=settings)
    assert again.unchanged and not again.resplit


def test_a_document_of_an_index_with_the_old_ids_is_read_again_under_its_new_id(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    index = open_index(tmp_path / "index")
    # An index written before ids kept the suffix: same files, same settings, ids without ".txt".
    stems = [dataclasses.replace(d, doc_id=d.doc_id.removesuffix(".txt")) for d in index.documents_with_text]
    renamed = [dataclasses.replace(p, doc_id=p.doc_id.removesuffix(".txt")) for p in index.passages]
    index.update(stems, renamed, encoder=encoder, settings=SETTINGS, corpus_fingerprint="old").save(tmp_path / "index")
    report = run(corpus_copy, tmp_path / "index", RefusingEncoder())
    index = open_index(tmp_path / "index")
    assert report.embedded == 0
    assert {d.doc_id for d in index.documents} == set(GOLD) == {p.doc_id for p in index.passages}


class FailingScandir:
    """``os.scandir`` failing for one folder: at once (no permission), or half-way through its listing."""

    def __init__(self, folder: Path, *, after: int | None = None) -> None:
        self.folder, self.after, self.real = folder, after, os.scandir

    def __call__(self, path: Any = ".") -> Any:
        if Path(path) != self.folder:
            return self.real(path)
        if self.after is None:
            raise PermissionError(13, "Permission denied", str(path))
        return _BrokenListing(self.real(path), self.after)


class _BrokenListing:
    def __init__(self, listing: Any, after: int) -> None:
        self.listing, self.left = listing, after

    def __enter__(self) -> _BrokenListing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listing.close()

    def __iter__(self) -> _BrokenListing:
        return self

    def __next__(self) -> os.DirEntry[str]:
        if self.left == 0:
            raise OSError(5, "Input/output error")
        self.left -= 1
        return next(self.listing)


@pytest.mark.parametrize("after", [None, 2], ids=["unreadable", "listing fails half-way"])
def test_a_corpus_that_cannot_be_listed_is_an_error_and_the_index_stays(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch, after: int | None
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    monkeypatch.setattr(os, "scandir", FailingScandir(corpus_copy, after=after))
    with pytest.raises(QAError, match=f"cannot list the corpus folder {corpus_copy} .*the index was left as it was"):
        run(corpus_copy, tmp_path / "index", RefusingEncoder())
    assert read_manifest(tmp_path / "index") == before


def test_a_build_that_would_remove_most_documents_is_refused_unless_allowed(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    run(corpus_copy, tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    away = tmp_path / "away"
    away.mkdir()
    for source in sorted(GOLD)[:3]:  # 3 of 5: most of them, and more than a couple
        shutil.move(corpus_copy / source, away / source)
    with pytest.raises(QAError) as caught:
        run(corpus_copy, tmp_path / "index", RefusingEncoder())
    message = str(caught.value)
    assert f"3 of the 5 documents in the index are gone from {corpus_copy}" in message
    assert "mounted" in message and "qa index --rebuild" in message
    assert read_manifest(tmp_path / "index") == before
    report = index_corpus(
        corpus_copy, tmp_path / "index", encoder=RefusingEncoder(), settings=SETTINGS, allow_mass_removal=True
    )
    assert (report.removed, report.documents) == (3, 2)


def test_removing_a_couple_of_documents_or_half_of_them_is_not_refused(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    (corpus_copy / "border.txt").write_text(NEW_ARTICLE)
    run(corpus_copy, tmp_path / "index", encoder)
    for source in sorted(GOLD)[:3]:  # 3 of 6: half, not most
        (corpus_copy / source).unlink()
    assert run(corpus_copy, tmp_path / "index", RefusingEncoder()).removed == 3
    for source in sorted(GOLD)[3:]:  # 2 of 3: most, but only a couple
        (corpus_copy / source).unlink()
    assert run(corpus_copy, tmp_path / "index", RefusingEncoder()).removed == 2
    assert [d.source for d in open_index(tmp_path / "index").documents] == ["border.txt"]


def test_links_out_of_the_corpus_are_indexed_only_when_asked(tmp_path: Path, encoder: FakeEncoder) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside.txt"
    corpus.mkdir()
    (corpus / "inside.txt").write_text(NEW_ARTICLE)
    outside.write_text("A secret paragraph that lives outside the corpus folder and must stay out of it.\n")
    (corpus / "secret.txt").symlink_to(outside)
    with pytest.warns(SkippedFileWarning, match="secret.txt: a symbolic link to .*outside the corpus folder"):
        run(corpus, tmp_path / "index", encoder)
    assert [d.source for d in open_index(tmp_path / "index").documents] == ["inside.txt"]
    index_corpus(corpus, tmp_path / "index", encoder=encoder, settings=SETTINGS, follow_links=True)
    assert [d.source for d in open_index(tmp_path / "index").documents] == ["inside.txt", "secret.txt"]


# --- issue 13: a corpus with nothing to index leaves the index as it was ----------------------------


def test_an_empty_corpus_folder_is_refused_and_no_index_is_written(tmp_path: Path, encoder: FakeEncoder) -> None:
    from qa.index.prepare import EmptyCorpusError

    (tmp_path / "corpus").mkdir()
    with pytest.raises(EmptyCorpusError, match=r"nothing to index: .*corpus holds no \.txt, \.md"):
        run(tmp_path / "corpus", tmp_path / "index", encoder)
    assert not (tmp_path / "index" / MANIFEST_NAME).exists() and encoder.calls == []


def test_a_corpus_left_with_boilerplate_only_is_refused_and_the_index_kept(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    from qa.index.prepare import EmptyCorpusError

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "border.txt").write_text(NEW_ARTICLE)
    run(corpus, tmp_path / "index", encoder)
    before = read_manifest(tmp_path / "index")
    (corpus / "border.txt").write_text("Home\nNews\nLogin\nSubscribe\n")  # one document: no mass removal
    with (
        pytest.warns(SkippedFileWarning, match=r"skipped border\.txt"),
        pytest.raises(EmptyCorpusError, match=r"the only file in .* holds no article text"),
    ):
        run(corpus, tmp_path / "index", RefusingEncoder())
    assert read_manifest(tmp_path / "index") == before
    assert [d.source for d in open_index(tmp_path / "index").documents] == ["border.txt"]


def test_an_unchanged_corpus_is_listed_not_read_and_its_stamps_are_not_rewritten(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in corpus_copy.iterdir():  # edited long ago, not just now (see RACY_SECONDS)
        past = path.stat().st_mtime - 60
        os.utime(path, (past, past))
    index_dir = tmp_path / "index"
    run(corpus_copy, index_dir, encoder)
    stamps = index_dir / STAMPS_NAME
    recorded = stamps.read_bytes()
    read: list[str] = []
    import qa.ingest.listing

    real = qa.ingest.listing.file_checksum

    def file_checksum(path: Path, sidecar: Path | None = None) -> str:
        read.append(path.name)
        return real(path, sidecar)

    monkeypatch.setattr("qa.ingest.listing.file_checksum", file_checksum)
    assert run(corpus_copy, index_dir, RefusingEncoder()).unchanged
    assert read == []
    assert stamps.read_bytes() == recorded

    (corpus_copy / KOREA_TIMES).write_text(NEW_ARTICLE, encoding="utf-8")
    report = run(corpus_copy, index_dir, encoder)
    assert (report.changed, read) == (1, [KOREA_TIMES])
    assert KOREA_TIMES.encode() in stamps.read_bytes()


@pytest.mark.parametrize("damage", ["missing", "not JSON", "another version"])
def test_stamps_that_cannot_be_used_mean_every_file_is_read(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder, damage: str
) -> None:
    from qa.index.stamps import read_stamps

    index_dir = tmp_path / "index"
    run(corpus_copy, index_dir, encoder)
    stamps = index_dir / STAMPS_NAME
    if damage == "missing":
        stamps.unlink()
    elif damage == "not JSON":
        stamps.write_text("{truncated", encoding="utf-8")
    else:
        stamps.write_text(stamps.read_text(encoding="utf-8").replace('"version":1', '"version":99'), encoding="utf-8")
    assert read_stamps(index_dir) is None
    assert run(corpus_copy, index_dir, RefusingEncoder()).unchanged
    assert read_stamps(index_dir) is not None  # recorded again
