"""Run the chat app: ``python app.py [--host 127.0.0.1] [--port 7860]`` (``make run ARGS="--port 8000"``).

Checks the login rule and that the port is free, brings the index up to date
with the corpus (building it on first run), then serves the Gradio app until
Ctrl+C. Any address but this machine's own, and ``--share``, need a login
(``$QA_AUTH`` or ``--auth-file``); without one the app refuses to start.
Parsing, the start-up checks and messages only; the work is in ``qa``.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from qa.embed.encoder import BACKENDS
from qa.errors import QAError
from qa.reader.choice import READER_CHOICES
from qa.reader.model import reader_for
from qa.safe_text import terminal_text

if TYPE_CHECKING:
    import gradio as gr

    from qa.llm.client import ChatModel

# Ports tried after a busy one, to suggest a free one.
NEARBY_PORTS = 20


def port_number(text: str) -> int:
    """``--port``: a whole number from 1 to 65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a whole number from 1 to 65535")
    return port


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of the app."""
    parser = argparse.ArgumentParser(description="Chat with a folder of articles in the browser.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=port_number, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--share", action="store_true", help="also open a public Gradio share link (needs a login, like --host)"
    )
    parser.add_argument(
        "--auth-file",
        type=Path,
        help="users who may log in, one user:password a line (default: $QA_AUTH=user:password; "
        "required for any --host but 127.0.0.1 and for --share)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME, e.g. the public name of a reverse proxy that passes "
        "it on (repeatable; on 127.0.0.1 the app answers only 127.0.0.1, localhost and --host)",
    )
    parser.add_argument("--corpus", type=Path, default=Path("corpus"), help="corpus folder (default: corpus/)")
    parser.add_argument("--index", type=Path, default=Path("index"), help="index folder (default: index/)")
    parser.add_argument(
        "--store",
        metavar="STORE",
        help="where the index lives: milvus-lite:PATH.db (Milvus Lite), milvus://HOST:PORT[/COLLECTION] (a Milvus "
        "server; token from $QA_MILVUS_TOKEN), or a folder (the local index) (default: $QA_STORE, else --index)",
    )
    parser.add_argument(
        "--follow-links",
        action="store_true",
        help="also index files that symbolic links out of the corpus folder point to",
    )
    parser.add_argument(
        "--model", help="sentence-transformers model name or folder (default: the index's, else all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, help="how the encoder runs (default: $QA_BACKEND, else openvino-bf16-streams)"
    )
    parser.add_argument(
        "--reader",
        choices=READER_CHOICES,
        help="the trained reader re-ranks, finds the short answer and refuses what the articles do not say; "
        "the chat's settings can turn it off per question (default: $QA_READER, else on)",
    )
    parser.add_argument(
        "--llm",
        metavar="URL",
        help="also have your own language model write each answer, citations checked: an OpenAI-compatible "
        "server's address, e.g. http://localhost:11434/v1 (default: $QA_LLM_URL; a key only from $QA_LLM_API_KEY)",
    )
    parser.add_argument(
        "--llm-model", metavar="NAME", help="the language model's name on that server (default: $QA_LLM_MODEL)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the login rule, bring the index up to date, then serve the app; the exit status."""
    args = parse_args(argv)
    with warnings.catch_warnings():
        # One line each, as the CLI prints them, while the app starts and while it serves.
        warnings.showwarning = _show_warning
        return _run(args)


def _show_warning(  # noqa: PLR0917 (the signature of warnings.showwarning)
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if issubclass(category, UserWarning):
        _tell(f"qa: warning: {message}")
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _tell(text: str) -> None:
    """One line on stderr, cleaned like everything the CLI prints (a file name may hold escape codes)."""
    print(terminal_text(text), file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from qa.web.auth import load_credentials, require_login_if_exposed

    try:
        # Before anything slow: a refusal should not wait for the model or the index.
        credentials = load_credentials(args.auth_file, os.environ)
        require_login_if_exposed(args.host, args.share, credentials)
        check_port(args.host, args.port)
        llm = _chat_model(args)
        from qa.index.lock import DEFAULT_WAIT_SECONDS
        from qa.index.spec import store_spec
        from qa.web.service import AnswerService

        store = store_spec(args.store, args.index)
        service = AnswerService.open(
            args.corpus,
            store.path if store.is_local and store.path is not None else args.index,
            store=store,
            model=args.model,
            backend=args.backend,
            reader=reader_for(args.reader),
            follow_links=args.follow_links,
            llm=llm,
        )
        # A damaged index is rebuilt here, like a missing one; the Corpus tab says so too.
        report = service.refresh(
            progress=sys.stderr.isatty(),
            wait=DEFAULT_WAIT_SECONDS,
            on_wait=lambda message: _tell(f"qa: {message}"),
        )
    except QAError as error:
        _tell(f"qa: error: {error}")
        return 1
    if report.empty_corpus:
        _tell(f"qa: warning: {report.empty_corpus}; serving an empty index: add articles in the Corpus tab")
    if report.rebuilt_reason:
        print(terminal_text(f"Rebuilt from scratch: {report.rebuilt_reason}."))
    print(
        f"Index: {report.documents} documents, {report.passages} passages ({report.embedded} embedded now), "
        f"{terminal_text(store.describe())}."
    )
    if llm is not None:
        print(terminal_text(f"Written answers: {llm.name} at {llm.config.shown_url}, every citation checked."))
        problem = llm.unreachable()
        if problem:
            _tell(f"qa: warning: {problem}; answers come from the articles alone until it answers")
    from qa.web.ui import launch

    try:
        # Not blocking, so that Gradio stays quiet (its hint to set `share=True` is for its own
        # launch(), not for this app, which has --share) and the app says where it serves.
        served = launch(
            service,
            host=args.host,
            port=args.port,
            share=args.share,
            credentials=credentials,
            allowed_hosts=args.allow_host,
            block=False,
        )
    except OSError as error:
        # Gradio's message names its own launch() parameters; the port was free when checked,
        # so another program took it while the index loaded.
        _tell(f"qa: error: {port_error(args.host, args.port, error)}")
        return 1
    # The model loads once the page is served (while the user reads it and types), so the first
    # question does not wait for it. Loading it beside Gradio's import instead slowed the start
    # by 0.3 s on 2 cores (2.55 against 2.22 s to HTTP 200, four starts each).
    threading.Thread(target=service.warm_up, daemon=True).start()
    print(f"Serving on {_url(args.host, args.port)} (Ctrl+C stops it).", flush=True)
    return _serve_until_interrupted(served)


def _chat_model(args: argparse.Namespace) -> ChatModel | None:
    """The language model asked for (``--llm``, ``--llm-model``, ``$QA_LLM_*``), else none."""
    from qa.llm.client import ChatModel, llm_config

    config = llm_config(args.llm, args.llm_model, os.environ)
    return ChatModel(config) if config is not None else None


def check_port(host: str, port: int) -> None:
    """Refuse at once an address this app cannot listen on, before the index and the model load.

    Raises:
        QAError: ``host`` is not an address of this machine, or ``port`` is taken or reserved.
    """
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise QAError(
            f"cannot listen on {host}: no such address ({error.strerror})",
            fix="give --host an address of this machine, such as 127.0.0.1 or 0.0.0.0",
        ) from error
    with socket.socket(family, kind, protocol) as probe:
        # As the server will: a port whose last connections are closing (TIME_WAIT) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise port_error(host, port, error) from error


def port_error(host: str, port: int, error: OSError) -> QAError:
    """What stops the app listening on ``host:port``, in this app's words; Gradio's errors carry no errno."""
    if error.errno == errno.EADDRNOTAVAIL:
        return QAError(
            f"cannot listen on {host}: it is not an address of this machine",
            fix="give --host 127.0.0.1 (this machine only) or 0.0.0.0 (every network)",
        )
    if error.errno in {errno.EACCES, errno.EPERM}:
        return QAError(
            f"port {port} is reserved for the system administrator", fix="choose one above 1023, such as 7860"
        )
    return QAError(
        f"port {port} is already in use on {host} (by another program, or by this app started before)",
        fix=f"stop that program, or choose another port: {_port_hint(host, port)}",
    )


def _port_hint(host: str, busy: int) -> str:
    """``--port 7861 is free``: the first free port after ``busy``."""
    for port in range(busy + 1, min(busy + 1 + NEARBY_PORTS, 65536)):
        try:
            check_port(host, port)
        except QAError:
            continue
        return f"--port {port} is free"
    return "--port PORT"


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


# How long Ctrl+C waits for Gradio to close before the app exits anyway.
CLOSE_SECONDS = 5.0


def _serve_until_interrupted(served: gr.Blocks) -> int:
    """Wait while the app serves; Ctrl+C (or SIGTERM) stops it. The exit status."""
    # Python's own Ctrl+C behaviour, whatever a library installed meanwhile; SIGTERM alike.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while served.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        # Gradio's close() waits on its queue and workers, and at exit the interpreter joins
        # their threads: a Ctrl+C has been seen to hang there for over a minute. After a bounded
        # close the process ends at once; a rebuild cut short is no worse than a SIGKILL, which
        # the index survives at any point (tests/index/test_build.py).
        closing = threading.Thread(target=served.close, kwargs={"verbose": False}, daemon=True)
        closing.start()
        closing.join(timeout=CLOSE_SECONDS)
        _tell("qa: stopped")
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
