"""app.py: it refuses to be reachable by others without a login, and asks for the login it is given."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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
