"""What the served app refuses before Gradio sees it, over real HTTP.

Other hosts, other sites' writes, uploads, big bodies and login guessing; and the
security headers on every answer.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_ui import PASSWORD, USER, Served, serving

from qa.web.guard import MAX_BODY_BYTES, SECURITY_HEADERS, LoginThrottle, guard_policy

SEARCH = json.dumps({"data": ["Why do defectors return?", 3, "bm25"]}).encode()
JSON = {"Content-Type": "application/json"}
PROXY_NAME = "qa.example.org"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("guarded"), allowed_hosts=(PROXY_NAME,)) as served:
        yield served


@pytest.fixture(scope="module")
def served_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("guarded-login"), credentials=[(USER, PASSWORD)]) as served:
        yield served


@pytest.fixture(scope="module")
def served_with_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """As the Corpus tab's "Add documents" is served beyond this machine: uploads open, behind a login."""
    with serving(tmp_path_factory.mktemp("uploads"), credentials=[(USER, PASSWORD)], uploads=True) as served:
        yield served


def _request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers (and ``Host`` if given), from ``source`` if given."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=60, source_address=(source, 0) if source else None
    )
    headers = dict(headers or {})
    try:
        connection.putrequest(method, "/" + path.lstrip("/"), skip_host="Host" in headers)
        if isinstance(body, bytes):
            headers.setdefault("Content-Length", str(len(body)))
        elif body is not None:
            headers["Transfer-Encoding"] = "chunked"
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            if isinstance(body, bytes):
                connection.send(body)
            elif body is not None:
                for chunk in body:
                    connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before the whole body was sent
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _search(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A `search` call with these headers besides its Content-Type."""
    return _request(url, "gradio_api/call/search", method="POST", body=SEARCH, headers={**JSON, **headers})


def _multipart(content: bytes, name: str = "files", filename: str = "article.txt") -> tuple[bytes, dict[str, str]]:
    boundary = "qa-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _port(url: str) -> int:
    return urllib.parse.urlsplit(url).port or 80


def _login(url: str, password: str, source: str | None = None) -> tuple[int, float, dict[str, str]]:
    """A login through the form route: its status, how long it took, its headers."""
    body = urllib.parse.urlencode({"username": USER, "password": password}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    started = time.monotonic()
    status, response_headers, _ = _request(url, "login", method="POST", body=body, headers=headers, source=source)
    return status, time.monotonic() - started, response_headers


def _cookie(headers: dict[str, str]) -> str:
    return headers["set-cookie"].split(";", 1)[0]


# Uploads.

UPLOAD_ROUTES = ["gradio_api/upload", "gradio_api/upload/", "gradio_api/process_recording", "upload"]


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_uploads_are_refused(served: Served, route: str) -> None:
    body, headers = _multipart(b"an article nobody asked for")
    status, _, answer = _request(served.url, route, method="POST", body=body, headers=headers)
    assert status in {403, 404}, (route, status, answer)
    assert b"article.txt" not in answer  # no stored file's path comes back


def test_the_upload_route_answers_this_app_accepts_no_uploads(served: Served) -> None:
    body, headers = _multipart(b"an article nobody asked for")
    status, _, answer = _request(served.url, "gradio_api/upload", method="POST", body=body, headers=headers)
    assert (status, json.loads(answer)) == (403, {"detail": "this app accepts no uploads"})


def test_multipart_files_are_refused_on_every_other_route(served: Served) -> None:
    body, headers = _multipart(b"x" * 1000)
    for route in ("gradio_api/component_server", "gradio_api/call/search", "gradio_api/queue/join"):
        assert _request(served.url, route, method="POST", body=body, headers=headers)[0] == 403, route


def test_open_uploads_need_the_login_and_stay_under_the_size_limit(served_with_uploads: Served) -> None:
    url = served_with_uploads.url
    small, headers = _multipart(b"A short article.\n")
    assert _request(url, "gradio_api/upload", method="POST", body=small, headers=headers)[0] == 401
    status, _, login_headers = _login(url, PASSWORD)
    assert status == 200
    cookie = {"Cookie": _cookie(login_headers), **headers}
    status, _, answer = _request(url, "gradio_api/upload", method="POST", body=small, headers=cookie)
    assert status == 200 and json.loads(answer)[0].endswith("article.txt")
    big, _ = _multipart(b"x" * (MAX_BODY_BYTES + 1))
    assert _request(url, "gradio_api/upload", method="POST", body=big, headers=cookie)[0] == 413
    other_site = {**cookie, "Origin": "https://evil.example"}
    assert _request(url, "gradio_api/upload", method="POST", body=small, headers=other_site)[0] == 403


def test_open_uploads_take_files_at_the_upload_route_only(served_with_uploads: Served) -> None:
    url = served_with_uploads.url
    _, _, login_headers = _login(url, PASSWORD)
    body, headers = _multipart(b"A short article.\n")
    cookie = {"Cookie": _cookie(login_headers), **headers}
    for route in ("gradio_api/process_recording", "gradio_api/component_server", "gradio_api/call/search"):
        status, _, answer = _request(url, route, method="POST", body=body, headers=cookie)
        assert (status, json.loads(answer)) == (403, {"detail": "this app accepts files only at its upload route"})


def test_an_uploaded_file_is_not_served_back(served_with_uploads: Served) -> None:
    url = served_with_uploads.url
    _, _, login_headers = _login(url, PASSWORD)
    cookie = _cookie(login_headers)
    body, headers = _multipart(b"An article only its sender should see.\n")
    _, _, answer = _request(url, "gradio_api/upload", method="POST", body=body, headers={"Cookie": cookie, **headers})
    [path] = json.loads(answer)
    for route in ("gradio_api/file=", "file="):
        status, _, served = _request(url, route + path, headers={"Cookie": cookie})
        assert status in {403, 404} and b"only its sender" not in served, route


# Body size.


def test_a_body_over_the_limit_is_refused(served: Served) -> None:
    question = "why " * (MAX_BODY_BYTES // 4)
    body = json.dumps({"data": [question, 3, "bm25"]}).encode()
    status, _, answer = _request(served.url, "gradio_api/call/search", method="POST", body=body, headers=JSON)
    assert status == 413 and b"over the limit" in answer


def test_a_chunked_body_over_the_limit_is_refused(served: Served) -> None:
    chunks = (b"x" * 1024 * 1024 for _ in range(MAX_BODY_BYTES // (1024 * 1024) + 2))
    status, _, answer = _request(served.url, "gradio_api/call/search", method="POST", body=chunks, headers=JSON)
    assert status == 413 and b"over the limit" in answer
    # A small chunked body still goes through.
    status, _, answer = _request(served.url, "gradio_api/call/search", method="POST", body=iter([SEARCH]), headers=JSON)
    assert status == 200 and b"event_id" in answer


# Hosts (DNS rebinding) and other sites' pages.


def test_only_this_machines_names_are_answered(served: Served) -> None:
    port = _port(served.url)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", PROXY_NAME):
        assert _request(served.url, "", headers={"Host": host})[0] == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"localhost:{port + 1}", f"127.0.0.1.nip.io:{port}", ""):
        status, _, answer = _request(served.url, "", headers={"Host": host})
        assert status == 400 and b"does not answer requests addressed to" in answer, host
        for path in ("config", "gradio_api/info"):
            assert _request(served.url, path, headers={"Host": host})[0] == 400, (host, path)
        status, _, _ = _request(
            served.url, "gradio_api/call/search", method="POST", body=SEARCH, headers={**JSON, "Host": host}
        )
        assert status == 400, host


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:1"},  # another app on this machine
        {"Origin": "http://127.0.0.1.nip.io"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_writes_from_another_sites_page_are_refused(served: Served, headers: dict[str, str]) -> None:
    for path in ("gradio_api/call/search", "gradio_api/queue/join", "gradio_api/call/rebuild", "login"):
        status, _, answer = _request(served.url, path, method="POST", body=SEARCH, headers={**JSON, **headers})
        assert status == 403 and b"another site" in answer, (path, status)
    assert _request(served.url, "", headers=headers)[0] == 200  # a link to the page still opens it


def test_writes_from_the_apps_own_page_and_from_scripts_are_answered(served: Served) -> None:
    own = [
        {"Origin": served.url.rstrip("/"), "Sec-Fetch-Site": "same-origin"},
        {"Origin": f"http://localhost:{_port(served.url)}", "Host": f"localhost:{_port(served.url)}"},
        {"Origin": f"https://{PROXY_NAME}", "Host": PROXY_NAME},  # behind a TLS proxy passing its name on
        {},  # gradio_client, curl: no page, no Origin
    ]
    for headers in own:
        status, _, answer = _request(
            served.url, "gradio_api/call/search", method="POST", body=SEARCH, headers={**JSON, **headers}
        )
        assert status == 200 and b"event_id" in answer, headers


def test_gradio_client_still_works(served: Served) -> None:
    from gradio_client import Client

    assert Client(served.url, verbose=False).predict("Why do defectors return?", 2, "bm25", api_name="/search")["hits"]


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    answers = [
        _request(served.url, ""),
        _request(served.url, "config"),
        _request(served.url, "no/such/page"),
        _request(served.url, "gradio_api/call/search", method="POST", body=SEARCH, headers=JSON),
        _request(served.url, "", headers={"Host": "evil.example"}),
        _request(served.url, "gradio_api/upload", method="POST", body=b"x", headers={"Content-Type": "text/plain"}),
    ]
    for status, headers, _ in answers:
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name.lower()) == value, (status, name)
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_policy_hosts() -> None:
    policy = guard_policy(host="127.0.0.1", port=7860, share=False, login=False, allowed_hosts=[" QA.example.org "])
    assert policy.hosts == {"127.0.0.1:7860", "localhost:7860", "[::1]:7860"}
    assert policy.extra_names == {"qa.example.org"}
    assert "127.0.0.2:8000" in (guard_policy(host="127.0.0.2", port=8000, share=False, login=False).hosts or ())
    assert "[::1]:8000" in (guard_policy(host="::1", port=8000, share=False, login=False).hosts or ())
    assert "localhost" in (guard_policy(host="localhost", port=80, share=False, login=False).hosts or ())
    # Reachable from a network, or through a share link: any name, since a login is required there.
    assert guard_policy(host="0.0.0.0", port=7860, share=False, login=True).hosts is None
    assert guard_policy(host="127.0.0.1", port=7860, share=True, login=True).hosts is None


# Logins.


def test_the_right_password_logs_in_at_once(served_with_login: Served) -> None:
    status, seconds, _ = _login(served_with_login.url, PASSWORD, source="127.0.0.4")
    assert status == 200 and seconds < 1


def test_repeated_wrong_passwords_slow_down_per_client(served_with_login: Served) -> None:
    url, throttle = served_with_login.url, LoginThrottle()
    client, other = "127.0.0.2", "127.0.0.5"
    started = time.monotonic()
    assert [_login(url, f"wrong {n}", client)[0] for n in range(throttle.free)] == [400] * throttle.free
    assert time.monotonic() - started < 1  # typing mistakes cost nothing
    status, seconds, _ = _login(url, "wrong again", client)
    assert status == 400 and seconds >= throttle.first_delay - 0.2
    # Another address is not slowed by this one's failures.
    status, seconds, _ = _login(url, "wrong", other)
    assert status == 400 and seconds < 0.5
    # The right password still logs in, after the wait, and the count starts afresh.
    status, seconds, _ = _login(url, PASSWORD, client)
    assert status == 200 and seconds >= 2 * throttle.first_delay - 0.2
    status, seconds, _ = _login(url, "wrong after success", client)
    assert status == 400 and seconds < 0.5


def test_a_burst_of_wrong_passwords_is_mostly_refused_unchecked(served_with_login: Served) -> None:
    url, throttle = served_with_login.url, LoginThrottle()
    started = time.monotonic()
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda n: _login(url, f"guess {n}", "127.0.0.3"), range(30)))
    seconds = time.monotonic() - started
    checked = [status for status, _, _ in answers if status == 400]
    refused = [headers for status, _, headers in answers if status == 429]
    # The free guesses, then only those whose wait fits in max_hold (1 + 2 + 4 s): 8 of 30, in about 7 s.
    waits = [throttle.delay(n) for n in range(1, 31)]
    expected = sum(1 for n in range(1, 31) if sum(waits[: n - 1]) <= throttle.max_hold)
    assert len(checked) == expected < 10 and len(checked) + len(refused) == 30
    assert all(int(headers["retry-after"]) > 0 for headers in refused)
    assert seconds < throttle.max_hold + 2


def test_login_routes_refuse_other_sites_pages(served_with_login: Served) -> None:
    body = urllib.parse.urlencode({"username": USER, "password": PASSWORD}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    assert (
        _request(served_with_login.url, "login", method="POST", body=body, headers=headers, source="127.0.0.6")[0]
        == 403
    )
