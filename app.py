"""Run the chat app: ``python app.py [--host 127.0.0.1] [--port 7860]``.

Brings the index up to date with the corpus (building it on first run), then
serves the Gradio app. Any address but this machine's own, and ``--share``,
need a login (``$QA_AUTH`` or ``--auth-file``); without one the app refuses to
start. Parsing and error messages only; the work is in ``qa``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from qa.embed.encoder import BACKENDS
from qa.errors import QAError
from qa.safe_text import terminal_text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of the app."""
    parser = argparse.ArgumentParser(description="Chat with a folder of articles in the browser.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
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
        "--follow-links",
        action="store_true",
        help="also index files that symbolic links out of the corpus folder point to",
    )
    parser.add_argument(
        "--model", help="sentence-transformers model name or folder (default: the index's, else all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, help="how the encoder runs (default: $QA_BACKEND, else openvino-bf16)"
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
        from qa.index.lock import DEFAULT_WAIT_SECONDS
        from qa.web.service import AnswerService

        service = AnswerService.open(
            args.corpus, args.index, model=args.model, backend=args.backend, follow_links=args.follow_links
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
    if report.rebuilt_reason:
        print(terminal_text(f"Rebuilt from scratch: {report.rebuilt_reason}."))
    print(f"Index: {report.documents} documents, {report.passages} passages ({report.embedded} embedded now).")
    # The model loads while the server starts, so the first question does not wait for it.
    threading.Thread(target=service.warm_up, daemon=True).start()
    from qa.web.ui import launch

    try:
        launch(
            service,
            host=args.host,
            port=args.port,
            share=args.share,
            credentials=credentials,
            allowed_hosts=args.allow_host,
        )
    except OSError as error:
        _tell(f"qa: error: cannot listen on {args.host}:{args.port} ({error})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
