"""The Corpus tab's adding, removing and rebuilding, through its handlers and over real HTTP uploads.

What a file must be to be added is what ``qa index`` reads: the refusals are
compared with the warnings ``qa index`` gives for the same files.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_guard import _cookie, _login, _multipart, _request
from test_ui import PASSWORD, USER, Served, _call, serving

from conftest import FakeModelEncoder
from qa.ingest.corpus import load_documents
from qa.web import corpus_tab
from qa.web.corpus_files import LEDGER_NAME
from qa.web.corpus_tab import (
    Pending,
    add_documents,
    readable_time,
    rebuild_index,
    remove_documents,
    status_text,
)
from qa.web.service import REBUILD_PASSAGES_PER_SECOND, AnswerService
from qa.web.uploads import (
    UPLOAD_MAX_BYTES,
    Upload,
    add_files,
    name_problem,
    plan_additions,
    read_uploads,
)

ARTICLE = (
    "Border towns prepare for a hard winter\n\n"
    "The river froze early this year, and the families living near the bridge say the market has been "
    "quiet for weeks while traders wait for the roads to open again.\n\n"
    "Local officials promised that the school would reopen once the heating was repaired, but parents "
    "remain doubtful after similar promises went unkept last winter.\n"
)
MARKDOWN = (
    "# Letters from the border\n\n"
    "Families separated by the border have written letters for decades, and a small office near the "
    "river still passes them on when the phone lines are cut.\n"
)
SIDECAR = json.dumps({"title": "Winter on the border", "outlet": "The Test Gazette", "date": "2024-01-05"})
ORIGINAL = "dailynk-kim-yo-jong-orders-encouragement-for-defector-families.txt"


@pytest.fixture
def service(corpus_copy: Path, tmp_path: Path) -> AnswerService:
    service = AnswerService(corpus_copy, tmp_path / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    return service


def _sent(folder: Path, files: dict[str, bytes | str]) -> list[str]:
    """The files as Gradio hands them to the handler: paths in its upload folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        paths.append(str(path))
    return paths


def _hidden(corpus: Path) -> list[str]:
    return sorted(p.name for p in corpus.iterdir() if p.name.startswith("."))


# Names and sizes.


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("story.txt", ""),
        ("Story Notes.md", ""),
        ("page.HTML", ""),
        ("story.meta.json", ""),
        ("../story.txt", "no folder"),
        ("news/story.txt", "no folder"),
        ("..\\story.txt", "no folder"),
        (".story.txt", "hidden"),
        ("story\u200b.txt", "invisible"),
        ("story\x1b[31m.txt", "control"),
        (" story.txt", "space"),
        ("report.pdf", "not .pdf"),
        ("README", "no suffix"),
        ("story.META.json", "lower case"),
        (".meta.json", "hidden"),
        ("a" * 300 + ".txt", "over 200 bytes"),
    ],
)
def test_only_plain_names_of_files_qa_reads_are_taken(name: str, problem: str) -> None:
    found = name_problem(name)
    assert (problem in found) if problem else found == "", (name, found)


def test_a_file_over_the_size_limit_is_refused_with_the_limit(tmp_path: Path) -> None:
    paths = _sent(tmp_path / "sent", {"big.txt": b"a" * (UPLOAD_MAX_BYTES + 1), "small.txt": ARTICLE})
    uploads, refused = read_uploads(paths)
    assert [u.name for u in uploads] == ["small.txt"]
    [(name, reason)] = [(r.name, r.reason) for r in refused]
    assert name == "big.txt" and "2.0 MB, over the 2 MB" in reason and "qa index" in reason


# The rules of `qa index`.

UNREADABLE = {
    "empty.txt": b"",
    "binary.txt": bytes(range(256)) * 40,
    "menu.txt": b"Home\nNews\nSports\nLogin\nSubscribe\n",
    "undecodable.txt": b"\xef\xbb\xbf" + b"\xff\xfe\xfa" * 10,
}


def test_files_qa_index_would_skip_are_refused_with_its_reason(corpus_copy: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    for name, content in UNREADABLE.items():
        (reference / name).write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_documents(reference) == []
    expected = {str(w.message).split(":", 1)[0].removeprefix("skipped "): str(w.message) for w in caught}
    plan = plan_additions(corpus_copy, [Upload(name, content) for name, content in UNREADABLE.items()])
    assert plan.write == ()
    assert {r.name: f"skipped {r.name}: {r.reason}" for r in plan.refused} == expected
    assert not any((corpus_copy / name).exists() for name in UNREADABLE)


def test_a_malformed_sidecar_is_refused_with_its_document(corpus_copy: Path) -> None:
    plan = plan_additions(corpus_copy, [Upload("story.txt", ARTICLE.encode()), Upload("story.meta.json", b"{oops")])
    assert plan.write == ()
    reasons = {r.name: r.reason for r in plan.refused}
    assert "story.meta.json is not valid JSON" in reasons["story.meta.json"]
    assert "story.meta.json is refused" in reasons["story.txt"]


def test_a_sidecar_must_describe_a_document(corpus_copy: Path) -> None:
    plan = plan_additions(corpus_copy, [Upload("nothing.meta.json", SIDECAR.encode())])
    assert [(r.name, "describes no document" in r.reason) for r in plan.refused] == [("nothing.meta.json", True)]
    # Beside a document already in the corpus folder it is taken, and asks nothing.
    alone = plan_additions(corpus_copy, [Upload(ORIGINAL.replace(".txt", ".meta.json"), SIDECAR.encode())])
    assert [u.name for u in alone.write] == [ORIGINAL.replace(".txt", ".meta.json")] and alone.replaces == ()


def test_ignored_sidecar_fields_and_other_encodings_are_noted(corpus_copy: Path) -> None:
    latin = ARTICLE.replace("river", "rivière").encode("cp1252")
    sidecar = json.dumps({"title": "Ok", "date": "2020-99-99"}).encode()
    plan = plan_additions(corpus_copy, [Upload("latin.txt", latin), Upload("latin.meta.json", sidecar)])
    assert [u.name for u in plan.write] == ["latin.meta.json", "latin.txt"]  # the sidecar first
    assert any('ignored "date"' in note for note in plan.notes)
    assert any("latin.txt was read as cp" in note and "(not UTF-8)" in note for note in plan.notes)  # a guess


# Adding, through the handler.


def test_added_documents_are_written_whole_recorded_and_indexed(service: AnswerService, tmp_path: Path) -> None:
    sent = _sent(tmp_path / "sent", {"winter.txt": ARTICLE, "winter.meta.json": SIDECAR, "letters.md": MARKDOWN})
    outcome = add_documents(service, sent, confirmed=frozenset())
    assert outcome.pending is None
    assert "Added: winter.meta.json, winter.txt, letters.md." in outcome.message.replace("\\", "")
    assert "Index updated: 7 documents" in outcome.message
    corpus = service.corpus_dir
    assert (corpus / "winter.txt").read_text() == ARTICLE
    assert _hidden(corpus) == [LEDGER_NAME]  # no temporary file left
    document = service.document("winter.txt")
    assert document is not None and (document.title, document.outlet) == ("Winter on the border", "The Test Gazette")
    assert service.document("letters.md") is not None
    assert status_text(service).startswith("**7** documents")


def test_replacing_a_file_asks_first_and_changes_nothing_until_then(service: AnswerService, tmp_path: Path) -> None:
    original = (service.corpus_dir / ORIGINAL).read_bytes()
    sent = _sent(tmp_path / "sent", {ORIGINAL: ARTICLE, "new.txt": ARTICLE.replace("river", "lake")})
    asked = add_documents(service, sent, confirmed=frozenset())
    assert asked.pending == Pending("add", frozenset({ORIGINAL}))
    assert "Replace 1 file" in asked.question and "the other files are added with them" in asked.question
    assert (service.corpus_dir / ORIGINAL).read_bytes() == original and not (service.corpus_dir / "new.txt").exists()
    done = add_documents(service, sent, confirmed=asked.pending.names)
    assert "Replaced:" in done.message and (service.corpus_dir / ORIGINAL).read_text() == ARTICLE
    assert service.status().documents == 6
    # The same bytes again: nothing to do, nothing asked.
    again = add_documents(service, sent, confirmed=frozenset())
    assert again.pending is None and "unchanged" in again.message


def test_a_file_that_appears_after_the_check_is_never_overwritten(corpus_copy: Path) -> None:
    plan = plan_additions(corpus_copy, [Upload("race.txt", ARTICLE.encode())])
    (corpus_copy / "race.txt").write_text("the person's own file")
    written, skipped = add_files(corpus_copy, plan, replace=frozenset())
    assert written == [] and "appeared" in skipped[0].reason
    assert (corpus_copy / "race.txt").read_text() == "the person's own file"


def test_replacing_a_link_replaces_the_link_not_its_target(corpus_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not the corpus's")
    (corpus_copy / "linked.txt").symlink_to(outside)
    plan = plan_additions(corpus_copy, [Upload("linked.txt", ARTICLE.encode())])
    assert plan.replaces == ("linked.txt",)
    add_files(corpus_copy, plan, replace={"linked.txt"})
    assert outside.read_text() == "not the corpus's"
    assert not (corpus_copy / "linked.txt").is_symlink() and (corpus_copy / "linked.txt").read_text() == ARTICLE


def test_a_record_qa_did_not_write_stops_it_before_writing(service: AnswerService, tmp_path: Path) -> None:
    (service.corpus_dir / LEDGER_NAME).write_text("my notes")
    outcome = add_documents(service, _sent(tmp_path / "sent", {"winter.txt": ARTICLE}), confirmed=frozenset())
    assert "is not qa's record" in outcome.message and outcome.keep_selection
    assert (
        not (service.corpus_dir / "winter.txt").exists()
        and (service.corpus_dir / LEDGER_NAME).read_text() == "my notes"
    )


# Removing.


def test_a_file_qa_added_is_removed_without_asking(service: AnswerService, tmp_path: Path) -> None:
    add_documents(
        service, _sent(tmp_path / "sent", {"winter.txt": ARTICLE, "winter.meta.json": SIDECAR}), confirmed=frozenset()
    )
    outcome = remove_documents(service, ["winter.txt"], confirmed=frozenset())
    assert outcome.pending is None and "Removed: winter.txt, winter.meta.json." in outcome.message.replace("\\", "")
    assert not (service.corpus_dir / "winter.txt").exists() and not (service.corpus_dir / "winter.meta.json").exists()
    assert service.document("winter.txt") is None and service.status().documents == 5
    assert json.loads((service.corpus_dir / LEDGER_NAME).read_text())["files"] == {}


def test_removing_files_qa_did_not_add_asks_first(service: AnswerService) -> None:
    originals = sorted(p.name for p in service.corpus_dir.glob("*.txt"))[:3]
    asked = remove_documents(service, originals, confirmed=frozenset())
    assert (
        asked.pending == Pending("remove", frozenset(originals))
        and "Delete 3 files that qa did not add" in asked.question
    )
    assert all((service.corpus_dir / name).exists() for name in originals) and service.status().documents == 5
    # Three of five at once: more than `qa index` drops unasked, but these were asked for.
    done = remove_documents(service, originals, confirmed=asked.pending.names)
    assert "Index updated: 2 documents" in done.message
    assert not any((service.corpus_dir / name).exists() for name in originals)


def test_a_file_edited_after_it_was_added_is_the_persons_own(service: AnswerService, tmp_path: Path) -> None:
    add_documents(service, _sent(tmp_path / "sent", {"winter.txt": ARTICLE}), confirmed=frozenset())
    (service.corpus_dir / "winter.txt").write_text(
        ARTICLE + "\nA paragraph the person added, long enough to be kept as text.\n"
    )
    asked = remove_documents(service, ["winter.txt"], confirmed=frozenset())
    assert asked.pending == Pending("remove", frozenset({"winter.txt"}))


def test_ids_that_are_not_indexed_documents_remove_nothing(service: AnswerService) -> None:
    outcome = remove_documents(service, ["../../etc/passwd", "/etc/passwd", ".qa-added.json"], confirmed=frozenset())
    assert outcome.pending is None and outcome.message.count("not in the index") == 3
    assert service.status().documents == 5


# Rebuilding, and the status line.


def test_a_large_rebuild_asks_first(service: AnswerService, monkeypatch: pytest.MonkeyPatch) -> None:
    passages = service.status().passages
    assert service.rebuild_seconds() == pytest.approx(passages / REBUILD_PASSAGES_PER_SECOND)
    assert rebuild_index(service, confirmed=False).message.startswith("Rebuilt")  # the bundled corpus is small
    monkeypatch.setattr(corpus_tab, "LARGE_REBUILD_SECONDS", service.rebuild_seconds() / 2)
    asked = rebuild_index(service, confirmed=False)
    assert asked.pending == Pending("rebuild") and f"all {passages:,} passages" in asked.question
    assert rebuild_index(service, confirmed=True).message.startswith(f"Rebuilt: 5 documents, {passages} passages")


@pytest.mark.parametrize(
    ("built", "now", "shown"),
    [
        ("2026-08-02T14:05:09+00:00", "2026-08-02T14:10:30+00:00", "2 Aug 2026, 14:05 UTC (5 minutes ago)"),
        ("2026-08-02T14:05:09+00:00", "2026-08-02T14:05:30+00:00", "2 Aug 2026, 14:05 UTC (just now)"),
        ("2026-08-02T14:05:09+00:00", "2026-08-03T15:05:09+00:00", "2 Aug 2026, 14:05 UTC (1 day ago)"),
        ("2026-08-02T16:05:09+02:00", "2026-08-02T17:05:09+00:00", "2 Aug 2026, 14:05 UTC (3 hours ago)"),
        ("2026-08-02T14:05:09Z", "2027-08-02T14:05:09+00:00", "2 Aug 2026, 14:05 UTC"),
        ("2026-08-02T14:05:09+00:00", "2026-08-01T14:05:09+00:00", "2 Aug 2026, 14:05 UTC"),
        ("", "2026-08-02T14:05:09+00:00", "at an unknown time"),
    ],
)
def test_build_times_are_readable(built: str, now: str, shown: str) -> None:
    assert readable_time(built, now=datetime.fromisoformat(now)) == shown


def test_the_status_line_says_when_the_index_was_built(service: AnswerService) -> None:
    built = datetime.fromisoformat(service.status().built_at)
    text = status_text(service, now=built + timedelta(minutes=5, seconds=3))
    day = built.astimezone(timezone.utc)
    assert f"Index built {day.day} {day:%b} {day.year}, {day:%H:%M} UTC (5 minutes ago)." in text
    assert service.status().built_at not in text  # no ISO time left


# Over HTTP: Gradio's upload route, then the page's "add" action.


@pytest.fixture(scope="module")
def served_with_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("corpus-uploads"), uploads=True) as served:
        yield served


def _upload(url: str, name: str, content: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    body, multipart = _multipart(content, filename=name)
    status, _, answer = _request(
        url, "gradio_api/upload", method="POST", body=body, headers={**multipart, **(headers or {})}
    )
    return status, answer


def _file_data(path: str, name: str) -> dict[str, object]:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_a_document_uploaded_over_http_is_added_and_indexed(served_with_uploads: Served) -> None:
    url, service = served_with_uploads.url, served_with_uploads.service
    status, answer = _upload(url, "winter.txt", ARTICLE.encode())
    assert status == 200
    [path] = json.loads(answer)
    event, data = _call(url, "add", [[_file_data(path, "winter.txt")]])
    assert event == "complete", data
    assert isinstance(data, list) and "Added: winter.txt." in data[2].replace("\\", "")
    assert "Index updated: 6 documents" in data[2]
    assert (served_with_uploads.workdir / "corpus" / "winter.txt").read_text() == ARTICLE
    assert service.document("winter.txt") is not None
    # The uploaded copy is not served back: the file route stays closed.
    status, _, body = _request(url, f"gradio_api/file={path}")
    assert status == 403 and ARTICLE.encode()[:40] not in body


def test_a_binary_file_uploaded_over_http_is_refused_and_not_kept(served_with_uploads: Served) -> None:
    url = served_with_uploads.url
    status, answer = _upload(url, "scan.txt", bytes(range(256)) * 40)
    assert status == 200
    [path] = json.loads(answer)
    event, data = _call(url, "add", [[_file_data(path, "scan.txt")]])
    assert event == "complete" and isinstance(data, list)
    assert "scan.txt: binary data, not text" in data[2].replace("\\", "")
    assert not (served_with_uploads.workdir / "corpus" / "scan.txt").exists()


def test_files_outside_the_upload_folder_are_not_taken(served_with_uploads: Served) -> None:
    corpus_file = served_with_uploads.workdir / "corpus" / ORIGINAL
    event, _ = _call(served_with_uploads.url, "add", [[_file_data(str(corpus_file), "copy.txt")]])
    assert event == "error" and not (served_with_uploads.workdir / "corpus" / "copy.txt").exists()


@pytest.fixture(scope="module")
def served_with_login_and_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("corpus-login"), credentials=[(USER, PASSWORD)], uploads=True) as served:
        yield served


def test_with_a_login_only_a_logged_in_user_adds_documents(served_with_login_and_uploads: Served) -> None:
    url = served_with_login_and_uploads.url
    assert _upload(url, "winter.txt", ARTICLE.encode())[0] == 401
    _, _, headers = _login(url, PASSWORD)
    cookie = _cookie(headers)
    status, answer = _upload(url, "winter.txt", ARTICLE.encode(), {"Cookie": cookie})
    assert status == 200
    [path] = json.loads(answer)
    data = json.dumps({"data": [[_file_data(path, "winter.txt")]]}).encode()
    assert (
        _request(url, "gradio_api/call/add", method="POST", body=data, headers={"Content-Type": "application/json"})[0]
        == 401
    )
    event, result = _call(url, "add", [[_file_data(path, "winter.txt")]], cookie=cookie)
    assert event == "complete" and isinstance(result, list) and "Added: winter.txt." in result[2].replace("\\", "")


def test_a_corpus_larger_than_the_page_lists_is_listed_in_part_and_says_so(
    service: AnswerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.web.chat import document_choices, unlisted_hint
    from qa.web.corpus_tab import removal_choices

    assert unlisted_hint(service) is None and "lists the first" not in status_text(service)
    monkeypatch.setattr("qa.web.service.LISTED_DOCUMENTS", 2)
    first_two = [d.doc_id for d in service.index.documents[:2]]
    assert [doc_id for _, doc_id in document_choices(service)] == first_two
    assert [doc_id for _, doc_id in removal_choices(service)] == first_two
    assert [d.doc_id for d, _ in service.listed_documents()] == first_two
    assert unlisted_hint(service) == "2 of 5 articles listed: type a file name or title for another"
    assert "The table lists the first 2." in status_text(service)
    # A document left out of the Remove list is removed by its typed file name.
    last = service.index.documents[-1].doc_id
    asked = remove_documents(service, [last], confirmed=frozenset())
    assert asked.pending == Pending("remove", frozenset({last}))
