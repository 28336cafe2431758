"""What the served app answers at all: addressed hosts, same-site writes, bounded bodies, slowed logins.

``RequestGuard`` sits in front of every Gradio route (an ASGI middleware given
to ``launch`` through FastAPI's ``middleware`` option) and refuses, before
Gradio sees them:

- requests addressed to a name the app does not serve, when it listens on this
  machine only: a web page whose own name is made to resolve to 127.0.0.1 (DNS
  rebinding) would otherwise be answered as if it were the app's own page;
- writes (``POST`` and the like) sent by a page of another site: a form or a
  ``fetch`` with a multipart body needs no CORS preflight, so without this any
  web site open in the browser could upload to, ask, rebuild or log in to the app;
- uploads, unless the policy opens them (the Corpus tab's "Add documents"),
  and then anywhere but Gradio's upload route; and any body over ``MAX_BODY_BYTES``;
- logins from a client that keeps getting the password wrong, each one waiting
  longer (``LoginThrottle``).

Every response carries the headers in ``SECURITY_HEADERS``. Messages never
repeat a password.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from qa.web.auth import is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The app takes questions, clicks and a login form: a few kilobytes. 10 MB also bounds
# a long conversation sent back with a question, and is Gradio's upload limit too.
MAX_BODY_BYTES = 10 * 1024 * 1024
# Gradio's routes that store files sent to them, under its /gradio_api prefix or not.
UPLOAD_ROUTES = frozenset({"upload", "process_recording"})
# The one of them the app uses when uploads are open (it records no audio).
OPEN_UPLOAD_ROUTE = "upload"
LOGIN_PATHS = frozenset({"/login", "/login/"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Gradio's page runs inline scripts (its configuration) and builds event handlers with
# `new Function` ('unsafe-eval'), and Svelte sets inline styles; everything else it loads
# comes from the app itself. What the policy still forbids: being framed by another site,
# fetching from or posting to any other address, plugins, and a changed <base>.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


@dataclass(frozen=True)
class LoginThrottle:
    """How long a client waits before its next login after failing.

    The first ``free`` failures cost nothing (typing mistakes); each later one
    doubles the wait from ``first_delay`` up to ``max_delay`` seconds. A login
    that would have to wait more than ``max_hold`` seconds is refused at once
    (HTTP 429) instead of being held open. A successful login starts afresh.
    """

    free: int = 5
    first_delay: float = 1.0
    max_delay: float = 60.0
    max_hold: float = 10.0

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` logins in a row that did not succeed."""
        if failures < self.free:
            return 0.0
        return float(min(self.max_delay, self.first_delay * 2 ** min(failures - self.free, 30)))


@dataclass(frozen=True)
class GuardPolicy:
    """What ``RequestGuard`` lets through.

    Attributes:
        hosts: ``Host`` values answered (lower case, with the port where it
            has one); ``None`` answers any (the app listens on a network and
            has a login).
        extra_names: Host names answered on any port and accepted as the
            origin of a write (a reverse proxy's public name).
        uploads: Whether Gradio's upload route is open (still same-site,
            size-limited and behind the login); multipart bodies stay refused
            on every other route.
        login: Whether a login is configured, so ``/login`` is throttled.
        throttle: How failed logins slow down.
        max_body: Largest request body accepted, in bytes.
    """

    hosts: frozenset[str] | None
    extra_names: frozenset[str] = frozenset()
    uploads: bool = False
    login: bool = False
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    max_body: int = MAX_BODY_BYTES


def guard_policy(
    *, host: str, port: int, share: bool, login: bool, allowed_hosts: Iterable[str] = (), uploads: bool = False
) -> GuardPolicy:
    """The policy for an app listening on ``host:port``.

    On a loopback address the app answers only ``127.0.0.1``, ``localhost``,
    ``[::1]`` and ``host`` itself (each with the port) and ``allowed_hosts``.
    On any other address, and with ``share`` (the relay picks its own public
    name), it answers any name: those need a login (``require_login_if_exposed``).
    """
    names = frozenset(name.strip().lower() for name in allowed_hosts if name.strip())
    hosts: frozenset[str] | None = None
    if is_loopback(host) and not share:
        loopback = {"127.0.0.1", "localhost", "[::1]", _bracketed(host.lower())}
        hosts = frozenset({f"{name}:{port}" for name in loopback} | (loopback if port == 80 else set()))
    return GuardPolicy(hosts=hosts, extra_names=names, uploads=uploads, login=login)


def _bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


@dataclass
class _Failures:
    """One client's logins that have not succeeded (counted when they start), and when the next may run."""

    count: int = 0
    next_at: float = 0.0


class RequestGuard:
    """ASGI middleware applying a ``GuardPolicy`` to every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy
        self._failures: dict[str, _Failures] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request, or pass it on with the security headers added to the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        receive, send = _limited(receive, send, self.policy.max_body)
        if self.policy.login and scope["method"] == "POST" and scope["path"] in LOGIN_PATHS:
            await self._login(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        """``(status, message, headers)`` when the request is refused before the app sees it."""
        policy = self.policy
        host = headers.get("host", "").lower()
        if not self._host_allowed(host):
            return 400, f"this app does not answer requests addressed to {host[:100]!r}", {}
        if scope["method"] in SAFE_METHODS:
            return None
        if not self._same_site(headers, host):
            return 403, "requests from another site's page are refused (Origin / Sec-Fetch-Site)", {}
        upload = _upload_refusal(scope["path"], headers, open_uploads=policy.uploads)
        if upload:
            return 403, upload, {}
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > policy.max_body:
            return 413, f"the request body is over the limit of {policy.max_body} bytes", {}
        return None

    def _host_allowed(self, host: str) -> bool:
        if self.policy.hosts is None or host in self.policy.hosts:
            return True
        return _hostname(host) in self.policy.extra_names

    def _same_site(self, headers: dict[str, str], host: str) -> bool:
        """Whether a write comes from the app's own page or from no page at all (a script, gradio_client)."""
        if headers.get("sec-fetch-site") in {"cross-site", "same-site"}:
            return False
        origin = headers.get("origin")
        if origin is None:
            return True
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            return False  # "null": a sandboxed frame, a file:// page, a redirect across sites
        netloc = parts.netloc.lower()
        default_port = {"http": ":80", "https": ":443"}.get(parts.scheme.lower(), "")
        netloc = netloc.removesuffix(default_port) if default_port else netloc
        return netloc in {host, host.removesuffix(":80"), host.removesuffix(":443")} or (
            (parts.hostname or "") in self.policy.extra_names
        )

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a login on after the client's wait; refuse it if that wait is too long."""
        throttle = self.policy.throttle
        client = (scope.get("client") or ("unknown", 0))[0]
        now = time.monotonic()
        self._forget_old(now)
        failures = self._failures.setdefault(client, _Failures())
        wait = max(0.0, failures.next_at - now)
        if wait > throttle.max_hold:
            seconds = math.ceil(wait)
            message = f"too many failed logins from your address; try again in {seconds} s"
            await _respond(send, 429, message, {"Retry-After": str(seconds)})
            return
        # Counted as failed until it succeeds, so logins sent all at once queue up too.
        failures.count += 1
        failures.next_at = now + wait + throttle.delay(failures.count)
        if wait:
            await asyncio.sleep(wait)
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)
        if status == [200]:
            self._failures.pop(client, None)

    def _forget_old(self, now: float) -> None:
        """Drop clients whose last failure is long past, so the table stays small."""
        if len(self._failures) < 1000:
            return
        horizon = self.policy.throttle.max_delay
        for client in [c for c, f in self._failures.items() if f.next_at + horizon < now]:
            del self._failures[client]


def _is_upload(path: str, headers: dict[str, str]) -> bool:
    """An upload route, or a multipart body anywhere but the login form (which the browser sends so)."""
    if _route(path) in UPLOAD_ROUTES:
        return True
    multipart = headers.get("content-type", "").lower().lstrip().startswith("multipart/")
    return multipart and path not in LOGIN_PATHS


def _upload_refusal(path: str, headers: dict[str, str], *, open_uploads: bool) -> str:
    """Why a request that sends files is refused; "" when it sends none, or to the open upload route."""
    if not _is_upload(path, headers):
        return ""
    if not open_uploads:
        return "this app accepts no uploads"
    return "" if _route(path) == OPEN_UPLOAD_ROUTE else "this app accepts files only at its upload route"


def _route(path: str) -> str:
    """The last part of a path: ``upload`` for ``/gradio_api/upload/``."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}


def _hostname(host: str) -> str:
    return (urlsplit(f"//{host}").hostname or "") if host else ""


def _with_headers(send: Send) -> Send:
    """``send`` adding ``SECURITY_HEADERS`` to the response, unless the app set them itself."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {key.decode("latin-1").lower() for key, _ in message.get("headers", [])}
            extra = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in SECURITY_HEADERS.items()
                if name.lower() not in present
            ]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return send_with_headers


def _limited(receive: Receive, send: Send, limit: int) -> tuple[Receive, Send]:
    """``receive`` and ``send`` that answer 413 once more than ``limit`` bytes arrive without a Content-Length."""
    received = 0
    started = False
    refused = False

    async def limited_receive() -> Message:
        nonlocal received, refused
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                if not started and not refused:
                    refused = True
                    await _respond(send, 413, f"the request body is over the limit of {limit} bytes", {})
                return {"type": "http.disconnect"}  # the app stops reading; its answer goes nowhere
        return message

    async def tracked_send(message: Message) -> None:
        nonlocal started
        if refused:
            return
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    return limited_receive, tracked_send


async def _respond(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
