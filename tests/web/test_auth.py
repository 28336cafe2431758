"""Logins: parsing users from $QA_AUTH or a file, and refusing to be reachable by others without one."""

from __future__ import annotations

import os
import warnings
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
    path.write_text(f"# who may log in\nalice:{SECRET}\n\n  bob :pass word 1 \n", encoding="utf-8")
    path.chmod(0o600)
    # Everything after the first colon is the password, exactly; the user name is trimmed.
    assert load_credentials(path, {}) == [("alice", SECRET), ("bob", "pass word 1 ")]


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:one-long-password\n", encoding="utf-8")
    path.chmod(0o600)
    assert load_credentials(path, {AUTH_ENV_VAR: "bob:two-long-password"}) == [("alice", "one-long-password")]
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


@pytest.mark.parametrize("password", ["x", "é", " ", "   ", "\t"])
def test_one_character_and_blank_passwords_are_refused(password: str) -> None:
    # (Empty ones are "expected user:password with neither empty", above.)
    message = "line 1: the password of user 'alice' is too short; use at least 8 characters"
    with pytest.raises(QAError, match=message):
        parse_auth_file(f"alice:{password}\n", name="users.txt")
    with pytest.raises(QAError, match=rf"\${AUTH_ENV_VAR}: the password of user 'alice' is too short"):
        load_credentials(None, {AUTH_ENV_VAR: f"alice:{password}"})


@pytest.mark.parametrize("password", ["ab", "1234567"])
def test_short_passwords_are_accepted_with_a_warning(password: str) -> None:
    with pytest.warns(UserWarning, match=r"users.txt, line 2: the password of user 'bob' is shorter than 8") as caught:
        credentials = parse_auth_file(f"alice:{SECRET}\nbob:{password}\n", name="users.txt")
    assert credentials[1] == ("bob", password)
    assert len(caught) == 1 and password not in str(caught[0].message)
    with pytest.warns(UserWarning, match=rf"\${AUTH_ENV_VAR}: the password of user 'bob' is shorter than 8"):
        load_credentials(None, {AUTH_ENV_VAR: f"bob:{password}"})


def test_eight_characters_need_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_auth_file("alice:12345678\n", name="users.txt") == [("alice", "12345678")]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize(("mode", "shown"), [(0o644, "-rw-r--r--"), (0o640, "-rw-r-----"), (0o602, "-rw-----w-")])
def test_an_auth_file_other_users_can_open_gets_a_warning(tmp_path: Path, mode: int, shown: str) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice:{SECRET}\n", encoding="utf-8")
    path.chmod(mode)
    with pytest.warns(UserWarning, match=rf"may read or change auth file .*users \({shown}\): chmod 600 .*users"):
        assert load_credentials(path, {}) == [("alice", SECRET)]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_auth_file_gets_no_warning(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "users"
    path.write_text(f"alice:{SECRET}\n", encoding="utf-8")
    path.chmod(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_credentials(path, {}) == [("alice", SECRET)]
