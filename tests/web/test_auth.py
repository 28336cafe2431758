"""Logins: parsing users from $QA_AUTH or a file, and refusing to be reachable by others without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.errors import QAError
from qa.web.auth import (
    AUTH_ENV_VAR,
    is_loopback,
    load_credentials,
    parse_auth_file,
    require_login_if_exposed,
)

SECRET = "s3cret:with-colon"


def test_auth_file_lines_are_users_and_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"# who may log in\nalice:{SECRET}\n\n  bob :pass word \n", encoding="utf-8")
    # Everything after the first colon is the password, exactly; the user name is trimmed.
    assert load_credentials(path, {}) == [("alice", SECRET), ("bob", "pass word ")]


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:one\n", encoding="utf-8")
    assert load_credentials(path, {AUTH_ENV_VAR: "bob:two"}) == [("alice", "one")]
    assert load_credentials(None, {AUTH_ENV_VAR: f"bob:{SECRET}"}) == [("bob", SECRET)]
    assert load_credentials(None, {}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"alice{SECRET.replace(':', '')}\n", "line 1: expected user:password"),
        (f"alice:{SECRET}\n:{SECRET}\n", "line 2: expected user:password"),
        ("alice:\n", "line 1: expected user:password"),
        (f"alice:{SECRET}\nalice:{SECRET}x\n", "line 2: user 'alice' is listed twice"),
        ("# nobody\n\n", "lists no user:password line"),
    ],
)
def test_bad_auth_files_are_refused_without_showing_a_password(text: str, message: str) -> None:
    with pytest.raises(QAError, match=message) as caught:
        parse_auth_file(text, name="users.txt")
    assert "s3cret" not in str(caught.value)


def test_bad_environment_value_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(QAError, match=rf"\${AUTH_ENV_VAR}: expected user:password") as caught:
        load_credentials(None, {AUTH_ENV_VAR: "s3cret"})
    assert "s3cret" not in str(caught.value)
    with pytest.raises(QAError, match=r"cannot read auth file .*missing"):
        load_credentials(tmp_path / "missing", {})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("my-laptop.local", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("host", "share"), [("0.0.0.0", False), ("192.168.1.10", False), ("127.0.0.1", True)])
def test_exposure_without_a_login_is_refused(host: str, share: bool) -> None:
    with pytest.raises(QAError, match=f"needs a login: set {AUTH_ENV_VAR}=user:password or give --auth-file"):
        require_login_if_exposed(host, share, [])
    require_login_if_exposed(host, share, [("alice", SECRET)])  # with a login it may


def test_this_machine_alone_needs_no_login() -> None:
    require_login_if_exposed("127.0.0.1", False, [])
