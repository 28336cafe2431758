"""Who may use the app: the login it asks for, and the refusal to be reachable by others without one.

The app listens on 127.0.0.1, where only this machine reaches it. Listening on
any other address, or opening a public ``--share`` link, requires users and
passwords, from ``$QA_AUTH`` (``user:password``) or a file (``--auth-file``, one
``user:password`` a line); Gradio then asks for them before the page, the API
or any other route answers. Messages name files, lines and users, never a
password.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path

from qa.errors import QAError

AUTH_ENV_VAR = "QA_AUTH"
HOW_TO_LOG_IN = f"set {AUTH_ENV_VAR}=user:password or give --auth-file FILE (one user:password a line)"

# Shorter passwords are refused; passwords shorter than GOOD_PASSWORD get a warning. Wrong
# guesses are also slowed down at the door (qa.web.guard.LoginThrottle).
MIN_PASSWORD = 2
GOOD_PASSWORD = 8

Credentials = list[tuple[str, str]]


def parse_credential(line: str, *, where: str) -> tuple[str, str]:
    """``(user, password)`` from ``user:password`` (the password may hold colons; neither may be empty).

    Raises:
        QAError: Not ``user:password``, or the password is shorter than ``MIN_PASSWORD``.
    """
    user, colon, password = line.partition(":")
    user = user.strip()
    if not colon or not user or not password:
        raise QAError(f"{where}: expected user:password with neither empty")
    check_password(user, password, where=where)
    return user, password


def check_password(user: str, password: str, *, where: str) -> None:
    """Refuse a password anyone would guess at once; warn about one shorter than ``GOOD_PASSWORD``.

    Raises:
        QAError: The password is blank or shorter than ``MIN_PASSWORD`` characters.
    """
    if len(password) < MIN_PASSWORD or not password.strip():
        raise QAError(f"{where}: the password of user {user!r} is too short; use at least {GOOD_PASSWORD} characters")
    if len(password) < GOOD_PASSWORD:
        warnings.warn(
            f"{where}: the password of user {user!r} is shorter than {GOOD_PASSWORD} characters, "
            "so it is easy to guess",
            UserWarning,
            stacklevel=3,
        )


def parse_auth_file(text: str, *, name: str) -> Credentials:
    """The users of an auth file: ``user:password`` lines; blank lines and ``#`` comments are skipped."""
    credentials: Credentials = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, password = parse_credential(line.rstrip("\r\n"), where=f"auth file {name}, line {number}")
        if any(user == known for known, _ in credentials):
            raise QAError(f"auth file {name}, line {number}: user {user!r} is listed twice")
        credentials.append((user, password))
    if not credentials:
        raise QAError(f"auth file {name} lists no user:password line")
    return credentials


def load_credentials(auth_file: Path | None, environment: Mapping[str, str]) -> Credentials:
    """The users who may log in: from ``auth_file`` if given, else ``$QA_AUTH``; none if neither is set."""
    if auth_file is not None:
        try:
            with auth_file.open("rb") as opened:
                mode = os.fstat(opened.fileno()).st_mode
                text = opened.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
            raise QAError(f"cannot read auth file {auth_file} ({reason})") from error
        if os.name == "posix" and mode & 0o077:
            warnings.warn(
                f"other users of this machine may read or change auth file {auth_file} "
                f"({stat.filemode(mode)}): chmod 600 {auth_file}",
                UserWarning,
                stacklevel=2,
            )
        return parse_auth_file(text, name=str(auth_file))
    value = environment.get(AUTH_ENV_VAR, "")
    return [parse_credential(value, where=f"${AUTH_ENV_VAR}")] if value else []


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine can reach (``0.0.0.0`` and ``::`` are every address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_login_if_exposed(host: str, share: bool, credentials: Credentials) -> None:
    """Refuse to let other machines reach the app without a login.

    Raises:
        QAError: ``host`` is not a loopback address, or ``share`` is asked for,
            and ``credentials`` is empty.
    """
    if credentials:
        return
    if share:
        raise QAError(f"--share publishes the app on a public link; it needs a login: {HOW_TO_LOG_IN}")
    if not is_loopback(host):
        raise QAError(f"--host {host} lets other machines reach the app; it needs a login: {HOW_TO_LOG_IN}")
