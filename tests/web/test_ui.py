"""The served app, over HTTP and through its handlers.

The `search` API against the library's own JSON, the login, what it never serves, the Rebuild
button and a damaged index at start.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import CORPUS, EMPTY_QUESTIONS, ODD_QUESTIONS, REPO, FakeModelEncoder, IndexWorker, damage_index
from qa.index.manifest import MANIFEST_NAME
from qa.records import result_to_dict
from qa.search.question import normalize_question
from qa.web.present import EMPTY_QUESTION_REPLY, as_markdown_text
from qa.web.service import AnswerService
from qa.web.ui import ANSWER_CONCURRENCY

USER, PASSWORD = "alice", "correct horse battery"
# Paths outside the index, as the article view or the file route might be asked for them.
OUTSIDE = [
    "/etc/passwd",
    "../../../../../../etc/passwd",
    "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "....//....//....//etc/passwd",
    "file:///etc/passwd",
    "/proc/self/environ",
]


@dataclass(frozen=True)
class Served:
    service: AnswerService
    url: str
    workdir: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(
    workdir: Path,
    credentials: list[tuple[str, str]] | None = None,
    encoder: FakeModelEncoder | None = None,
    *,
    uploads: bool = False,
    allowed_hosts: tuple[str, ...] = (),
) -> tuple[Served, object]:
    from qa.web.ui import launch

    if not (workdir / "corpus").exists():
        shutil.copytree(CORPUS, workdir / "corpus")
    encoder = encoder or FakeModelEncoder()
    service = AnswerService(workdir / "corpus", workdir / "index", encoder=encoder)  # type: ignore[arg-type]
    service.refresh()
    port = _free_port()
    with pytest.MonkeyPatch.context() as patch:
        # As if the person running the app had allowed Gradio to serve the folder holding
        # the corpus and the index: the app must still serve neither.
        patch.setenv("GRADIO_ALLOWED_PATHS", str(workdir))
        app = launch(
            service,
            host="127.0.0.1",
            port=port,
            credentials=credentials,
            allowed_hosts=allowed_hosts,
            uploads=uploads,
            block=False,
        )
    return Served(service, f"http://127.0.0.1:{port}/", workdir), app


@contextlib.contextmanager
def serving(
    workdir: Path,
    credentials: list[tuple[str, str]] | None = None,
    *,
    uploads: bool = False,
    allowed_hosts: tuple[str, ...] = (),
) -> Iterator[Served]:
    """The app served from ``workdir`` for the ``with`` block, then closed."""
    served, app = _serve(workdir, credentials, uploads=uploads, allowed_hosts=allowed_hosts)
    try:
        yield served
    finally:
        app.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("web")) as served:
        yield served


@pytest.fixture(scope="module")
def served_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("web-login"), credentials=[(USER, PASSWORD)]) as served:
        yield served


def _get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _call(url: str, api: str, data: list[object], cookie: str = "") -> tuple[str, object]:
    """A call through Gradio's HTTP API: the final event's name and data."""
    headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
    status, body = _get(f"{url}gradio_api/call/{api}", json.dumps({"data": data}).encode(), headers)
    assert status == 200, body
    event_id = json.loads(body)["event_id"]
    _, stream = _get(f"{url}gradio_api/call/{api}/{event_id}", headers=headers)
    lines = stream.decode().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("event:"))
    return lines[last].removeprefix("event:").strip(), json.loads(lines[last + 1].removeprefix("data:"))


def test_search_api_returns_the_cli_json(served: Served) -> None:
    from gradio_client import Client

    client = Client(served.url, verbose=False)
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/search"}
    answer = client.predict("Why do defectors return?", 3, "bm25", api_name="/search")
    assert answer == result_to_dict(served.service.ask("Why do defectors return?", k=3, mode="bm25"))
    assert len(answer["hits"]) == 3


@pytest.mark.parametrize(("question", "mode", "message"), [("   ", "hybrid", "empty"), ("q", "fuzzy", "unknown mode")])
def test_search_api_refuses_bad_input_clearly(served: Served, question: str, mode: str, message: str) -> None:
    from gradio_client import Client

    client = Client(served.url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(question, 3, mode, api_name="/search")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["Why return?", "3", "hybrid"], "k must be a whole number of passages, not a string '3'"),
        (["Why return?", "many", "hybrid"], "k must be a whole number of passages, not a string 'many'"),
        (["Why return?", 2.5, "hybrid"], "k must be a whole number of passages, not 2.5"),
        (["Why return?", True, "hybrid"], "k must be a whole number of passages, not a boolean True"),
        (["Why return?", [3], "hybrid"], "k must be a whole number of passages, not a list [3]"),
        (["Why return?", 0, "hybrid"], "k must be at least 1, not 0"),
        (["Why return?", -4, "hybrid"], "k must be at least 1, not -4"),
        (["Why return?", None, "hybrid"], "k must be a whole number of passages, not null"),
        ([["Why", "return?"], 3, "hybrid"], "the question must be a string, not a list"),
        ([{"q": "Why return?"}, 3, "hybrid"], "the question must be a string, not an object"),
        ([42, 3, "hybrid"], "the question must be a string, not a number"),
        (["Why return?", 3, ["hybrid"]], "unknown mode ['hybrid']: use one of"),
        (["Why return?", 3, None], "unknown mode None: use one of"),
        (["Why return?", 3, "x" * 500], "unknown mode 'xxxxxxxx"),
    ],
)
def test_malformed_search_calls_say_what_was_wrong(served: Served, data: list[object], message: str) -> None:
    event, answer = _call(served.url, "search", data)
    assert event == "error" and isinstance(answer, dict), (event, answer)
    assert str(answer.get("error")).startswith(message), answer
    assert len(str(answer["error"])) < 200  # a huge value is not echoed whole


# What the page sends with a question: history, earlier sources and which conversation (kept on the
# server), chat, question, k, mode, reader, filters.
RESPOND = [None, None, None, [], "Why return?", 3, "hybrid", False, [], [], "", ""]


@pytest.mark.parametrize(
    ("api", "data", "message"),
    [
        ("search", [], "search takes 3 values (question, k, mode), got 0"),
        ("search", ["Why return?"], "search takes 3 values (question, k, mode), got 1"),
        ("article", [], "article takes 1 value (choice), got 0"),
        ("respond", RESPOND[:3], "respond takes 12 values, got 3"),
        ("respond", [*RESPOND[:5], "abc", *RESPOND[6:]], "Could not preprocess input component at index 5 (a `slider`"),
        ("respond", [*RESPOND[:3], "not a list", *RESPOND[4:]], "respond got an input value it cannot take: value"),
        ("respond", [*RESPOND[:3], [{"role": "user"}], *RESPOND[4:]], "respond got an input value it cannot take: 0."),
    ],
)
def test_malformed_calls_of_the_pages_actions_say_what_was_wrong(
    served: Served, api: str, data: list[object], message: str
) -> None:
    event, answer = _call(served.url, api, data)
    assert event == "error" and isinstance(answer, dict), (event, answer)
    assert str(answer.get("error")).startswith(message), answer
    assert "Original error" not in str(answer["error"])  # what was wrong, not Python's words for it


def test_whole_numbers_written_as_floats_are_taken_as_k(served: Served) -> None:
    event, answer = _call(served.url, "search", ["Why do defectors return?", 2.0, "bm25"])
    assert event == "complete" and isinstance(answer, list) and len(answer[0]["hits"]) == 2


def _service(corpus: Path, index: Path) -> AnswerService:
    service = AnswerService(corpus, index, encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    return service


def test_rebuild_button_refuses_while_a_cli_qa_index_runs_then_rebuilds(corpus_copy: Path, tmp_path: Path) -> None:
    from qa.web.corpus_tab import rebuilder

    service = _service(corpus_copy, tmp_path / "index")
    other = IndexWorker(corpus_copy, tmp_path / "index", pause="embedding", options=("--rebuild",))
    other.wait_for("PAUSED embedding")
    status, rows, message, *_ = rebuilder(service)()
    assert message.startswith(f"Not rebuilt: another qa index \\(pid {other.process.pid}\\) is updating")
    assert "**5** documents" in status and len(rows) == 5  # the page still shows the index it answers from
    other.let_go()
    assert other.finish() == 0
    assert rebuilder(service)()[2].startswith("Rebuilt: 5 documents")


def test_a_damaged_index_is_rebuilt_at_start_and_the_corpus_tab_says_so(corpus_copy: Path, tmp_path: Path) -> None:
    from qa.web.ui import build_app

    _service(corpus_copy, tmp_path / "index")
    damage_index(tmp_path / "index", "truncated vectors")
    service = _service(corpus_copy, tmp_path / "index")
    app = build_app(service)
    [notice] = [block for block in app.blocks.values() if getattr(block, "elem_id", None) == "qa-rebuild-message"]
    assert str(notice.value).startswith("Rebuilt from scratch when the app started: the index in")
    assert "is damaged" in str(notice.value) and "bytes; the manifest says" in str(notice.value)


def test_app_starts_on_a_damaged_index_after_rebuilding_it(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    _service(corpus_copy, tmp_path / "index")
    damage_index(tmp_path / "index", "manifest not JSON")
    monkeypatch.setattr("qa.index.build.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.setenv("QA_MODEL", "fake-encoder")
    launched: list[AnswerService] = []

    class NotServed:
        is_running = False  # app.py waits while the app serves: this one stops at once

        def __init__(self, service: AnswerService) -> None:
            launched.append(service)

        def launch(self, **_: object) -> None:
            pass

    monkeypatch.setattr("qa.web.ui.build_app", NotServed)
    spec = importlib.util.spec_from_file_location("app", REPO / "app.py")
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    capsys.readouterr()
    assert app.main(["--corpus", str(corpus_copy), "--index", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "Rebuilt from scratch: the index in" in out and "manifest.json is unreadable" in out
    assert launched and launched[0].ask("Why do defectors return?").hits


class MeetingEncoder(FakeModelEncoder):
    """Embeds a question starting with "meet" only while another such question is being embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(2, timeout=20)

    def encode(self, texts: list[str]) -> np.ndarray:
        if texts and texts[0].startswith("meet"):
            self.meeting.wait()
        return super().encode(texts)


def test_two_questions_are_answered_at_once(tmp_path: Path) -> None:
    assert ANSWER_CONCURRENCY == 2  # measured best on 2 cores (README, "Many users at once")
    served, app = _serve(tmp_path, encoder=MeetingEncoder())
    try:
        with ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(_call, served.url, "search", [f"meet {n}: why return?", 2, "hybrid"]) for n in (1, 2)]
            events = [call.result(timeout=60)[0] for call in calls]
    finally:
        app.close()  # type: ignore[attr-defined]
    assert events == ["complete", "complete"]  # one at a time, each would wait for the other in vain


def test_rebuild_is_callable_over_http_and_embeds_every_passage_again(served: Served) -> None:
    event, data = _call(served.url, "rebuild", [])
    assert event == "complete"
    passages = served.service.status().passages
    assert isinstance(data, list) and f"{passages} passages ({passages} embedded)" in data[2]


def test_article_view_shows_only_indexed_documents(corpus_copy: Path, tmp_path: Path) -> None:
    from qa.web.chat import _article_opener

    (corpus_copy / ".hidden.txt").write_text("Hidden files are never indexed.\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("A file beside the corpus.\n", encoding="utf-8")
    service = AnswerService(corpus_copy, tmp_path / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    doc_id = service.documents()[0][0].doc_id
    open_article = _article_opener(service)
    assert "qa-highlight" in open_article(f"{doc_id}::3")[0]
    near = [f"{doc_id}.txt", str(corpus_copy / f"{doc_id}.txt"), f"./{doc_id}", f"../corpus/{doc_id}"]
    for choice in [*OUTSIDE, *near, ".hidden", "../secret", str(tmp_path / "secret"), "index/manifest", "app"]:
        for value in (choice, f"{choice}::1"):
            assert open_article(value)[0] == "<p>That article is no longer in the index.</p>", value


def test_article_view_over_http_never_reads_a_file(served: Served) -> None:
    app_text = (REPO / "app.py").read_text(encoding="utf-8")
    for choice in [*OUTSIDE, "app.py", str(REPO / "app.py")]:
        for value in (choice, f"{choice}::1"):
            event, data = _call(served.url, "article", [value])
            text = json.dumps(data)
            assert "root:" not in text and app_text[:60] not in text and "PATH=" not in text, (value, event)


def test_file_route_serves_no_file(served: Served) -> None:
    index_dir = served.workdir / "index"
    corpus_file = next((served.workdir / "corpus").glob("*.txt"))
    targets = {
        "/etc/passwd": b"root:",
        str(REPO / "app.py"): b"Run the chat app",
        "app.py": b"Run the chat app",
        str(index_dir / MANIFEST_NAME): b"format_version",
        str(corpus_file): corpus_file.read_bytes()[:40],
        str(index_dir / "embeddings.sqlite"): b"SQLite format",
    }
    for target, content in targets.items():
        variants = {target, urllib.parse.quote(target, safe=""), "/" + target.lstrip("/")}
        for variant in variants:
            for route in ("gradio_api/file=", "file=", "gradio_api/file/"):
                status, body = _get(served.url + route + variant)
                assert status >= 400 and content not in body, (route + variant, status)


def test_with_a_login_nothing_answers_before_it(served_with_login: Served) -> None:
    url = served_with_login.url
    status, page = _get(url)
    assert status == 200 and b"auth_required" in page and b"qa-question" not in page  # the login form only
    manifest = str(served_with_login.workdir / "index" / MANIFEST_NAME)
    for path in ("config", "gradio_api/info", "gradio_api/openapi.json", f"gradio_api/file={manifest}"):
        assert _get(url + path)[0] == 401, path
    search = json.dumps({"data": ["Why do defectors return?", 3, "bm25"]}).encode()
    for api in ("search", "rebuild", "article"):
        status, _ = _get(f"{url}gradio_api/call/{api}", search, {"Content-Type": "application/json"})
        assert status == 401, api
    assert _get(url + "login", urllib.parse.urlencode({"username": USER, "password": "wrong"}).encode())[0] == 400


def test_with_a_login_everything_answers_after_it(served_with_login: Served) -> None:
    from gradio_client import Client

    url = served_with_login.url
    cookie = _login(url, USER, PASSWORD)
    assert _get(url + "config", headers={"Cookie": cookie})[0] == 200
    assert _call(url, "search", ["Why do defectors return?", 3, "bm25"], cookie=cookie)[0] == "complete"
    client = Client(url, auth=(USER, PASSWORD), verbose=False)
    assert client.predict("Why do defectors return?", 2, "bm25", api_name="/search")["hits"]


def _login(url: str, user: str, password: str) -> str:
    """Log in through Gradio's login form; its session cookies, as a Cookie header."""
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "login", data=body), timeout=30) as response:
        assert response.status == 200
        cookies = response.headers.get_all("Set-Cookie") or []
    return "; ".join(cookie.split(";", 1)[0] for cookie in cookies)


@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_search_api_answers_odd_questions_like_the_library(served: Served, kind: str) -> None:
    from gradio_client import Client

    service, url = served.service, served.url
    typed = ODD_QUESTIONS[kind]
    answer = Client(url, verbose=False).predict(typed, 3, "hybrid", api_name="/search")
    assert answer == result_to_dict(service.ask(typed, k=3))
    assert answer["query"] == normalize_question(typed).text and answer["hits"]


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_search_api_refuses_empty_questions(served: Served, typed: str) -> None:
    from gradio_client import Client

    with pytest.raises(Exception, match="the question is empty"):
        Client(served.url, verbose=False).predict(typed, 3, "hybrid", api_name="/search")


# The chat handler, called as Gradio calls it: one dict of every field's value.
FIELDS = ("question", "chat", "history", "turns", "k", "mode", "reader", "documents", "outlets", "from", "to")


def chat(service: AnswerService, question: str, history: list[str], **settings: object) -> tuple[Any, ...]:
    from qa.web.chat import _responder

    respond = _responder(service, {name: name for name in FIELDS})
    values = {
        "question": question,
        "chat": [],
        "history": history,
        "k": 3,
        "mode": "hybrid",
        "reader": False,
        **settings,
    }
    return respond({name: values.get(name) for name in FIELDS})  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_chat_answers_odd_questions(served: Served, kind: str) -> None:
    typed = ODD_QUESTIONS[kind]
    asked = normalize_question(typed).text
    messages, history, _, sources, *_ = chat(served.service, typed, ["earlier question"])
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == as_markdown_text(asked)  # markup shows as text
    assert history == ["earlier question", asked]
    assert "qa-source" in sources
    assert ("Your question was" in messages[1]["content"]) == (kind == "long")


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_chat_asks_for_a_question_when_there_is_none(served: Served, typed: str) -> None:
    messages, history, *_ = chat(served.service, typed, ["earlier question"])
    assert messages == [{"role": "assistant", "content": EMPTY_QUESTION_REPLY}]
    assert history == ["earlier question"]


def test_an_answer_from_filtered_articles_says_so_and_shows_the_filters_as_chips(served: Served) -> None:
    document = served.service.documents()[0][0]
    messages, *_, chips = chat(
        served.service, "Why do defectors return?", [], documents=[document.doc_id], to="2030-01-01"
    )
    reply = messages[-1]["content"]
    assert reply.startswith(
        as_markdown_text(f"Searched only article “{document.title or document.source}”; to 2030-01-01.")
    )
    assert chips.count('class="qa-chip"') == 2 and "2030-01-01" in chips
    messages, *_, chips = chat(served.service, "Why do defectors return?", [])
    assert not messages[-1]["content"].startswith("Searched only") and chips == ""


def test_an_article_the_list_leaves_out_is_searched_by_its_typed_file_name_or_title(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qa.web.service.LISTED_DOCUMENTS", 1)
    from qa.web.chat import document_choices

    last = served.service.index.documents[-1]
    assert last.doc_id not in {doc_id for _, doc_id in document_choices(served.service)}
    for typed in (last.source, (last.title or last.source).upper()):
        messages, _, _, sources, *_ = chat(served.service, "Why do defectors return?", [], documents=[typed])
        shown = as_markdown_text(f"Searched only article “{last.title or last.source}”")
        assert messages[-1]["content"].startswith(shown), typed
        assert sources.count("qa-source") >= 1
    messages, *_ = chat(served.service, "Why do defectors return?", [], documents=["no such article"])
    assert "no such article" in messages[-1]["content"] and "Searched only" not in messages[-1]["content"]


def test_each_answer_links_its_citations_to_its_own_sources(served: Served) -> None:
    earlier = [(1, "<p>earlier sources</p>")]
    from qa.web.chat import _responder

    respond = _responder(served.service, {name: name for name in FIELDS})
    values = {
        "question": "Why do defectors return?",
        "history": ["q"],
        "turns": earlier,
        "k": 3,
        "mode": "hybrid",
        "reader": False,
    }
    messages, history, turns, sources, *_ = respond({name: values.get(name) for name in FIELDS})
    assert [turn for turn, _ in turns] == [1, 2] and history == ["q", "Why do defectors return?"]
    assert "(#qa-source-2-1 " in messages[-1]["content"] and 'id="qa-source-2-1"' in sources
    assert '<section class="qa-turn" data-turn="1" hidden><p>earlier sources</p>' in sources


def test_the_chats_clear_button_forgets_the_conversation_like_new_conversation(served: Served) -> None:
    from qa.web.chat import Conversation, start_afresh
    from qa.web.ui import build_app

    app = build_app(served.service)
    ids = {block._id: getattr(block, "elem_id", None) for block in app.blocks.values()}
    resets = {
        (ids[block_id], event): [ids[block._id] or type(block).__name__ for block in fn.outputs]
        for fn in app.fns.values()
        for block_id, event in fn.targets
        if fn.fn is start_afresh
    }
    # The trash button and "New conversation" empty the same things: the messages, the earlier
    # questions and sources (so a follow-up starts afresh), the sources panel, the article view.
    assert set(resets) == {("qa-chat", "clear"), ("qa-new", "click")}
    assert resets[("qa-chat", "clear")] == resets[("qa-new", "click")]
    cleared = dict(zip(resets[("qa-chat", "clear")], start_afresh(Conversation()), strict=False))
    assert cleared["qa-chat"] == [] and cleared["qa-sources"] == "" and cleared["State"] == []
    assert [name for name in resets[("qa-chat", "clear")] if name == "State"] == ["State", "State"]
    # Both end the session's conversation that every way of asking reads, so an answer being
    # written stops (tests/web/test_conversation.py); it is not one of the states cleared.
    ended = {block for fn in app.fns.values() if fn.fn is start_afresh for block in fn.inputs}
    asking = [fn for fn in app.fns.values() if any(ids.get(block_id) == "qa-ask" for block_id, _ in fn.targets)]
    assert len(ended) == 1 and isinstance(next(iter(ended)).value, Conversation)
    assert ended <= set(asking[0].inputs) and not ended & {b for fn in app.fns.values() for b in fn.outputs}
