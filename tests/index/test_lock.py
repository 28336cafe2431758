"""index_lock: one holder per index folder; others refuse at once or wait, then give up."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest

from qa.errors import IndexBusyError, QAError
from qa.index.lock import (
    LOCK_NAME,
    forget_generation,
    index_lock,
    lock_holder,
    record_generation,
    recorded_generations,
)


def test_a_second_holder_is_refused_at_once_with_the_holders_pid(tmp_path: Path) -> None:
    with index_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        started = time.monotonic()
        refused = pytest.raises(IndexBusyError, match=rf"another qa index \(pid {os.getpid()}\) is updating")
        with refused, index_lock(tmp_path):
            pass
        assert time.monotonic() - started < 1
    with index_lock(tmp_path):  # released on leaving the block
        pass


def test_a_waiting_holder_says_so_once_and_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    messages: list[str] = []
    first_in = threading.Event()

    def hold_briefly() -> None:
        with index_lock(tmp_path):
            first_in.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    assert first_in.wait(timeout=10)
    with index_lock(tmp_path, wait=10, on_wait=messages.append):
        assert not holder.is_alive()
    holder.join()
    assert len(messages) == 1 and f"another qa index (pid {os.getpid()})" in messages[0]


def test_waiting_gives_up_after_the_time_allowed(tmp_path: Path) -> None:
    with index_lock(tmp_path):
        started = time.monotonic()
        gave_up = pytest.raises(IndexBusyError, match=r"after waiting 0\.3 s: try again when it has finished")
        with gave_up, index_lock(tmp_path, wait=0.3):
            pass
        assert 0.3 <= time.monotonic() - started < 2


# --- the lock file is qa's own: never a link, never truncated ----------------------------------


def test_a_lock_file_replaced_by_a_symlink_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("a file qa did not write\n")
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    (index_dir / LOCK_NAME).symlink_to(victim)
    with pytest.raises(QAError, match=r"qa-index\.lock is a symbolic link.*: remove the link"), index_lock(index_dir):
        pass
    assert victim.read_text() == "a file qa did not write\n"


def test_a_dangling_symlinked_lock_creates_nothing_where_it_points(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    (index_dir / LOCK_NAME).symlink_to(tmp_path / "made-through-the-link")
    with pytest.raises(QAError, match="symbolic link"), index_lock(index_dir):
        pass
    assert not (tmp_path / "made-through-the-link").exists()


def test_a_lock_file_with_another_name_or_foreign_content_is_refused_unchanged(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    other = tmp_path / "other.txt"
    other.write_text("12\n")
    os.link(other, index_dir / LOCK_NAME)  # a hard link: the same file under two names
    with pytest.raises(QAError, match="hard links"), index_lock(index_dir):
        pass
    assert other.read_text() == "12\n"
    (index_dir / LOCK_NAME).unlink()
    (index_dir / LOCK_NAME).write_text("somebody's notes, not a lock of qa\n")
    with pytest.raises(QAError, match="holds something qa did not write"), index_lock(index_dir):
        pass
    assert (index_dir / LOCK_NAME).read_text() == "somebody's notes, not a lock of qa\n"


def test_the_lock_file_is_never_truncated_and_keeps_its_journal(tmp_path: Path) -> None:
    record_generation(tmp_path, "abc123", pid=7)
    size = (tmp_path / LOCK_NAME).stat().st_size
    with index_lock(tmp_path):
        assert lock_holder(tmp_path) == f"pid {os.getpid()}"
    assert (tmp_path / LOCK_NAME).stat().st_size == size
    assert [(r.generation, r.pid) for r in recorded_generations(tmp_path)] == [("abc123", 7)]
    assert lock_holder(tmp_path) == "pid unknown"  # released


def test_the_journal_records_each_generation_once_and_reuses_forgotten_slots(tmp_path: Path) -> None:
    record_generation(tmp_path, "a1", pid=1)
    record_generation(tmp_path, "b2", pid=None)
    record_generation(tmp_path, "a1", pid=1)
    assert [(r.generation, r.pid) for r in recorded_generations(tmp_path)] == [("a1", 1), ("b2", None)]
    size = (tmp_path / LOCK_NAME).stat().st_size
    forget_generation(tmp_path, "a1")
    record_generation(tmp_path, "c3", pid=3)
    assert [r.generation for r in recorded_generations(tmp_path)] == ["c3", "b2"]
    assert (tmp_path / LOCK_NAME).stat().st_size == size


def test_a_lock_file_of_an_earlier_qa_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("4242\n")
    with index_lock(tmp_path):
        assert lock_holder(tmp_path) == f"pid {os.getpid()}"
    assert recorded_generations(tmp_path) == []


# --- the index folder: empty, new or an index already ------------------------------------------


def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("mine")
    (tmp_path / "bm25-notes").mkdir()
    with (
        pytest.raises(QAError, match=r"is not an index folder of qa and holds other files \(bm25-notes, thesis.tex\)"),
        index_lock(tmp_path),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25-notes", "thesis.tex"]


def test_a_folder_whose_manifest_is_not_qas_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"name": "a web app", "icons": []}')
    with pytest.raises(QAError, match="give --index an empty or new folder"), index_lock(tmp_path):
        pass
    assert (tmp_path / "manifest.json").read_text() == '{"name": "a web app", "icons": []}'


@pytest.mark.parametrize(
    "contents",
    [
        [],
        ["beir/scifact/x"],  # the cache of `qa eval --beir`, made before the first `qa index`
        ["README.md", ".gitkeep"],  # the repository's own index/ folder on a fresh clone, say
        [LOCK_NAME, "notes.txt"],  # an index (perhaps never committed) that somebody keeps notes in
        ["manifest.json", "documents-18ec8a9472b0e929.jsonl"],  # an index whose manifest is damaged
    ],
)
def test_an_empty_new_or_index_folder_is_taken(tmp_path: Path, contents: list[str]) -> None:
    for name in contents:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    with index_lock(tmp_path / "new" if not contents else tmp_path):
        pass


def test_a_folder_holding_an_index_manifest_is_taken(tmp_path: Path) -> None:
    manifest = {"format_version": 3, "corpus_fingerprint": "x", "files": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "notes.txt").write_text("mine")
    with index_lock(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_file_given_as_the_index_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "index").write_text("not a folder")
    with pytest.raises(QAError, match="is a file, not a folder: give --index a folder"), index_lock(tmp_path / "index"):
        pass


# --- a folder that cannot be written -----------------------------------------------------------


def fail_to_open(monkeypatch: pytest.MonkeyPatch, name: str, error: int) -> None:
    """Make opening ``name`` fail with ``error``, as a read-only file system or a full disk does."""
    real_open = os.open

    def failing(path: str | os.PathLike[str], flags: int, *args: object) -> int:
        if Path(path).name == name:
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", failing)


def test_a_read_only_index_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_to_open(monkeypatch, LOCK_NAME, errno.EROFS)
    with (
        pytest.raises(QAError, match=r"cannot use .* as the index folder \(Read-only file system\): give --index a"),
        index_lock(tmp_path),
    ):
        pass


def test_a_full_disk_at_the_lock_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(QAError, match=r"\(No space left on device\): free some disk space"), index_lock(tmp_path):
        pass
    monkeypatch.undo()
    with index_lock(tmp_path, wait=0):  # and the lock was released
        pass
