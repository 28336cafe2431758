"""index_lock: one holder per index folder; others refuse at once or wait, then give up."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from qa.errors import IndexBusyError
from qa.index.lock import LOCK_NAME, index_lock


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
