"""app.py: it refuses to be reachable by others without a login, and asks for the login it is given."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

from conftest import CORPUS, REPO
from qa.web.auth import AUTH_ENV_VAR

SECRET = "never-print-me"
STARTUP_SECONDS = 180


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """app.py, imported from the repository; nothing may open a service (load a model) through it."""
    spec = importlib.util.spec_from_file_location("app_under_test", REPO / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv(AUTH_ENV_VAR, raising=False)

    def must_not_open(*arguments: object, **options: object) -> None:
        raise AssertionError("the service was opened before the login was checked")

    monkeypatch.setattr("qa.web.service.AnswerService.open", must_not_open)
    return module


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines reach the app; it needs a login"),
        (["--host", "192.168.1.10", "--port", "7999"], "--host 192.168.1.10 lets other machines"),
        (["--share"], "--share publishes the app on a public link; it needs a login"),
    ],
)
def test_exposed_without_a_login_it_refuses_to_start(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    assert app_module.main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"qa: error: {reason}")
    assert line.endswith(f"set {AUTH_ENV_VAR}=user:password or give --auth-file FILE (one user:password a line)")


def test_a_bad_auth_file_is_refused_without_printing_the_password(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{SECRET}\nbob{SECRET}\n", encoding="utf-8")
    users.chmod(0o600)
    assert app_module.main(["--host", "0.0.0.0", "--auth-file", str(users)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "line 2: expected user:password" in line and SECRET not in line


def test_auth_file_warnings_are_one_line_each_and_never_show_the_password(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    users = tmp_path / "users"
    users.write_text("alice:short12\nbob\n", encoding="utf-8")
    users.chmod(0o644)
    assert app_module.main(["--host", "0.0.0.0", "--auth-file", str(users)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"qa: warning: other users of this machine may read or change auth file {users} (-rw-r--r--): "
        f"chmod 600 {users}",
        f"qa: warning: auth file {users}, line 1: the password of user 'alice' is shorter than 8 characters, "
        "so it is easy to guess",
        f"qa: error: auth file {users}, line 2: expected user:password with neither empty",
    ]
    assert "short12" not in "".join(lines)


def test_a_one_character_password_stops_the_app(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH_ENV_VAR, "alice:x")
    assert app_module.main(["--host", "0.0.0.0"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"qa: error: ${AUTH_ENV_VAR}: the password of user 'alice' is too short; use at least 8 characters"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--llm", "localhost:11434", "--llm-model", "llama3.2"], "--llm 'localhost:11434' is not an http(s) address"),
        (["--llm", "http://localhost:11434/v1"], "--llm needs the model's name too"),
        (["--llm-model", "llama3.2"], "--llm-model needs the model's server too"),
    ],
)
def test_incomplete_language_model_settings_stop_the_app_before_anything_loads(
    app_module: ModuleType,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    words: str,
) -> None:
    for name in ("QA_LLM_URL", "QA_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert app_module.main(["--port", str(_free_port()), *argv]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"qa: error: {words}")


def _environment(values: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without $QA_AUTH, with this checkout's ``qa`` first on the path."""
    environment = {key: value for key, value in os.environ.items() if key != AUTH_ENV_VAR}
    path = [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**environment, "PYTHONPATH": os.pathsep.join(path), **(values or {})}


def test_the_refusal_comes_from_the_command_line_too(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--host", "0.0.0.0", "--index", str(tmp_path / "index")],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
        check=False,
    )
    assert finished.returncode != 0
    assert len(finished.stderr.splitlines()) == 1 and "it needs a login" in finished.stderr
    assert not (tmp_path / "index").exists()  # it stopped before building anything


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def app_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """app.py with $QA_AUTH, on a free loopback port, with the real model."""
    workdir = tmp_path_factory.mktemp("app-login")
    shutil.copytree(CORPUS, workdir / "corpus")
    port = _free_port()
    log = workdir / "app.log"
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--corpus", "corpus", "--index", "index"]
    environment = _environment(
        {AUTH_ENV_VAR: f"alice:{SECRET}", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    )
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while _status_or_none(url) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert SECRET not in log.read_text(errors="replace")


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)[0]
    except OSError:
        return None


@pytest.mark.slow
def test_with_a_login_the_app_answers_only_after_it(app_with_login: str) -> None:
    url = app_with_login
    status, page = _status(url)
    assert status == 200 and b'"auth_required":true' in page.replace(b" ", b"")
    assert b"qa-question" not in page  # the login form, not the app
    for path in ("config", "gradio_api/info", "gradio_api/file=app.py"):
        assert _status(url + path)[0] == 401, path
    call = (url + "gradio_api/call/search", b'{"data": ["Why do defectors return?", 3, "bm25"]}')
    assert _status(*call, headers={"Content-Type": "application/json"})[0] == 401
    wrong = _status(url + "login", b"username=alice&password=wrong")
    assert wrong[0] == 400
    cookie = _login(url, "alice", SECRET)
    assert _status(url + "config", headers={"Cookie": cookie})[0] == 200
    status, body = _status(*call, headers={"Content-Type": "application/json", "Cookie": cookie})
    assert status == 200 and b"event_id" in body


def _login(url: str, user: str, password: str) -> str:
    """Log in through the form Gradio serves; the session cookies, as a Cookie header."""
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "login", data=body), timeout=10) as response:
        assert response.status == 200
        cookies = response.headers.get_all("Set-Cookie") or []
    return "; ".join(cookie.split(";", 1)[0] for cookie in cookies)


# --- issue 13: start-up in the app's own words ------------------------------------------------------


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_in_use_is_refused_before_the_index_loads(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], held_port: int
) -> None:
    assert app_module.main(["--port", str(held_port)]) == 1  # app_module: the service is never opened
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"qa: error: port {held_port} is already in use on 127.0.0.1")
    suggested = int(line.rsplit("--port ", 1)[1].removesuffix(" is free"))
    with socket.socket() as probe:  # the port it suggests is free
        probe.bind(("127.0.0.1", suggested))
    assert "launch()" not in line and "server_port" not in line


def test_an_address_of_another_machine_is_refused_before_the_index_loads(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH_ENV_VAR, f"alice:{SECRET}")
    assert app_module.main(["--host", "192.0.2.1"]) == 1  # TEST-NET-1: never this machine's
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "qa: error: cannot listen on 192.0.2.1: it is not an address of this machine: "
        "give --host 127.0.0.1 (this machine only) or 0.0.0.0 (every network)"
    )


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_port_out_of_range_is_a_usage_error(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        app_module.main(["--port", port])
    assert caught.value.code == 2
    assert f"argument --port: {port!r} is not a port: use a whole number from 1 to 65535" in capsys.readouterr().err


def test_a_port_taken_while_the_index_loads_is_reported_in_the_apps_words(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.index.prepare import IndexReport

    class LoadedService:
        def refresh(self, *, progress: bool, wait: float, on_wait: object) -> IndexReport:
            return IndexReport(
                documents=5, passages=40, added=0, changed=0, removed=0, skipped=0, embedded=0, seconds=0.1
            )

        def warm_up(self) -> None:
            pass

    def gradio_refuses(service: object, *, host: str, port: int, block: bool, **options: object) -> None:
        raise OSError(
            f"Cannot find empty port in range: {port}-{port}. You can specify a different port by setting the "
            "GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`."
        )

    monkeypatch.setattr("qa.web.service.AnswerService.open", lambda *arguments, **options: LoadedService())
    monkeypatch.setattr("qa.web.ui.launch", gradio_refuses)
    port = _free_port()
    assert app_module.main(["--port", str(port)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"qa: error: port {port} is already in use on 127.0.0.1")
    assert "launch()" not in line and "GRADIO_SERVER_PORT" not in line


def test_a_port_in_use_stops_the_process_before_it_builds_an_index(tmp_path: Path, held_port: int) -> None:
    command = [sys.executable, str(REPO / "app.py"), "--port", str(held_port), "--index", str(tmp_path / "index")]
    started = time.monotonic()
    finished = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=120, check=False)
    assert finished.returncode == 1 and finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"qa: error: port {held_port} is already in use")
    assert not (tmp_path / "index").exists() and time.monotonic() - started < 60


# app.py in a process of its own, with the fake encoder in place of the model (nothing else patched).
FAKE_MODEL_APP = """
import runpy, sys
sys.path[:0] = [{src!r}, {tests!r}]
import conftest, qa.index.build
qa.index.build.SentenceTransformerEncoder = conftest.FakeModelEncoder
sys.argv = [{app!r}, *sys.argv[1:]]
runpy.run_path({app!r}, run_name="__main__")
"""


def _read_lines(stream: IO[str] | None, into: queue.Queue[str]) -> None:
    for line in stream or ():
        into.put(line)


def _drained(lines: queue.Queue[str]) -> list[str]:
    drained = []
    while not lines.empty():
        drained.append(lines.get())
    return drained


def test_the_app_says_where_it_serves_without_gradios_hints_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    script = tmp_path / "fake_model_app.py"
    script.write_text(FAKE_MODEL_APP.format(src=str(REPO / "src"), tests=str(REPO / "tests"), app=str(REPO / "app.py")))
    shutil.copytree(CORPUS, tmp_path / "corpus")
    port = _free_port()
    command = [sys.executable, str(script), "--port", str(port), "--corpus", "corpus", "--index", "index"]
    environment = _environment({"GRADIO_ANALYTICS_ENABLED": "False", "QA_MODEL": "fake-encoder"})
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()
    for stream, into in ((process.stdout, lines), (process.stderr, errors)):
        threading.Thread(target=_read_lines, args=(stream, into), daemon=True).start()
    printed: list[str] = []
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (printed and printed[-1].startswith("Serving on")):  # Gradio's own lines would come first
            assert time.monotonic() < deadline and process.poll() is None, printed
            with contextlib.suppress(queue.Empty):
                printed.append(lines.get(timeout=0.1))
        assert printed[-1] == f"Serving on http://127.0.0.1:{port}/ (Ctrl+C stops it).\n"
        assert _status(f"http://127.0.0.1:{port}/")[0] == 200
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    time.sleep(0.5)  # the readers' last lines
    printed += _drained(lines)
    err = "".join(_drained(errors))
    assert status == 0
    everything = "".join(printed) + err
    assert "share=True" not in everything and "launch()" not in everything and "Running on" not in everything
    assert printed[0].startswith("Index: 5 documents") and err.splitlines()[-1] == "qa: stopped"


# --- issue 13: the Makefile passes ARGS on and says what it installs --------------------------------

FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and the virtual environment's python: makes the venv, logs every other call.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
echo "$*" >> "$QA_FAKE_LOG"
"""


def _make(tmp_path: Path, *arguments: str) -> str:
    """``make -C REPO ARGUMENTS`` with a fake interpreter and a virtual environment in ``tmp_path``; its output."""
    python = tmp_path / "python3"
    if not python.exists():
        python.write_text(FAKE_PYTHON)
        python.chmod(0o755)
    # Not the make running these tests (its variables, ARGS among them, would reach this one).
    environment = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS"}}
    environment["QA_FAKE_LOG"] = str(tmp_path / "calls.log")
    command = ["make", "--no-print-directory", "-C", str(REPO), f"PYTHON={python}", f"VENV={tmp_path / 'venv'}"]
    finished = subprocess.run(
        [*command, *arguments], capture_output=True, text=True, env=environment, timeout=60, check=True
    )
    assert finished.stderr == ""
    return finished.stdout


def test_make_run_says_what_it_installs_then_passes_args_to_the_app(tmp_path: Path) -> None:
    out = _make(tmp_path, "run", "ARGS=--port 8000 --share")
    steps = [line for line in out.splitlines() if line.startswith("qa: ")]
    assert [step.split(" (")[0].split(" ...")[0] for step in steps] == [
        f"qa: setting up {tmp_path / 'venv'}/",
        f"qa: creating the virtual environment {tmp_path / 'venv'}/",
        "qa: installing torch 2.13.0",
        "qa: installing qa and its dependencies",
        "qa: checking that torch is the CPU build",
        "qa: set-up done.",
    ]
    calls = (tmp_path / "calls.log").read_text().splitlines()
    installs = [call for call in calls if " pip " in f" {call} "]
    assert len(installs) == 2 and all("--quiet --progress-bar off" in call for call in installs)
    assert calls[-1] == "app.py --port 8000 --share"
    # Set up once: the next run goes straight to the app, with its own ARGS.
    again = _make(tmp_path, "run", "ARGS=--host 0.0.0.0")
    assert "qa: " not in again and (tmp_path / "calls.log").read_text().splitlines()[-1] == "app.py --host 0.0.0.0"


def test_make_test_passes_args_to_pytest(tmp_path: Path) -> None:
    _make(tmp_path, "test", "ARGS=-k filters -x")
    assert (tmp_path / "calls.log").read_text().splitlines()[-1] == "-m pytest -k filters -x"
