"""A new conversation stops an answer still being written into the old one, and nothing of it comes back.

Threads stand in for Gradio: one sends an answer's updates (asking for the next only once the last
is sent, as Gradio does), the other is "New conversation" clearing the chat.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Generator

import gradio as gr

from qa.web.chat import Conversation

WAIT = 5.0
# An answer's last update: Gradio ends a run by sending each output's last value once more.
NOTHING = (gr.skip(),)


class Answer:
    """An answer's updates, written until it is closed; remembers whether it was."""

    def __init__(self) -> None:
        self.closed = False

    def updates(self) -> Generator[tuple[str]]:
        try:
            for word in range(1_000):
                yield (f"word {word}",)
        finally:
            self.closed = True


def _start_afresh_in_a_thread(conversation: Conversation) -> threading.Event:
    done = threading.Event()

    def start_afresh() -> None:
        conversation.start_afresh(wait=WAIT)
        done.set()

    threading.Thread(target=start_afresh, daemon=True).start()
    return done


def test_updates_pass_while_the_conversation_is_the_one_shown() -> None:
    conversation = Conversation()
    answer = Answer()
    updates = conversation.updates(answer.updates())
    assert [next(updates) for _ in range(3)] == [("word 0",), ("word 1",), ("word 2",)]


def test_a_new_conversation_waits_for_the_update_on_its_way_then_the_answer_stops() -> None:
    conversation = Conversation()
    answer = Answer()
    updates = conversation.updates(answer.updates())
    assert next(updates) == ("word 0",)  # handed to Gradio, which is still sending it
    cleared = _start_afresh_in_a_thread(conversation)
    assert not cleared.wait(0.3)  # the chat is not cleared before that update has gone
    assert list(updates) == [NOTHING]  # Gradio asks for the next: the answer stops instead
    assert cleared.wait(WAIT)
    assert answer.closed  # so the model's answer is no longer read


def test_a_new_conversation_while_the_answer_waits_for_its_model_is_at_once() -> None:
    conversation = Conversation()
    answer = Answer()
    word = threading.Event()

    def slow_model() -> Generator[tuple[str]]:
        yield ("first",)
        word.wait(WAIT)  # the model takes its time over the next word
        yield from answer.updates()

    updates = conversation.updates(slow_model())
    next(updates)
    sent_after: list[tuple[str]] = []
    rest = threading.Thread(target=lambda: sent_after.extend(updates))
    rest.start()  # the first update was sent; the answer waits for the model
    time.sleep(0.2)
    began = time.monotonic()
    conversation.start_afresh(wait=WAIT)
    assert time.monotonic() - began < 1.0
    word.set()
    rest.join(WAIT)
    assert not rest.is_alive() and sent_after == [NOTHING] and answer.closed  # the answer stopped at its next word


def test_gradios_cancelling_an_answer_lets_the_new_conversation_go_on() -> None:
    conversation = Conversation()
    answer = Answer()
    updates = conversation.updates(answer.updates())
    next(updates)
    cleared = _start_afresh_in_a_thread(conversation)
    assert not cleared.wait(0.3)
    updates.close()  # what Gradio's cancel does to an answer it will not ask again
    assert cleared.wait(WAIT) and answer.closed


def test_an_answer_whose_conversation_ends_while_it_searches_sends_nothing() -> None:
    conversation = Conversation()
    answer = Answer()

    def searching_then_answering() -> Generator[tuple[str]]:
        conversation.start_afresh(wait=WAIT)  # "New conversation" while the passages are searched
        yield from answer.updates()

    assert list(conversation.updates(searching_then_answering())) == [NOTHING] and answer.closed


def test_an_answer_in_the_new_conversation_is_sent() -> None:
    conversation = Conversation()
    conversation.start_afresh(wait=WAIT)
    assert next(conversation.updates(Answer().updates())) == ("word 0",)


def test_each_session_gets_its_own_conversation() -> None:
    first = Conversation()
    first.start_afresh(wait=WAIT)
    second = copy.deepcopy(first)  # what Gradio does with a State's first value for a new session
    assert second is not first and second.number == 0


def test_an_answer_written_to_its_end_closes_with_an_update_that_changes_nothing() -> None:
    words = [("one",), ("two",)]
    assert list(Conversation().updates(word for word in words)) == [*words, NOTHING]
