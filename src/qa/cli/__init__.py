"""The ``qa`` command line: parse, call the library, print; errors become one line on stderr.

``arguments`` parses, ``commands`` runs each command, ``output`` says what it found for people
and ``written`` streams the answer of the user's own language model (``qa search --llm``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from qa.cli.arguments import build_parser, parse_arguments
from qa.cli.commands import COMMANDS
from qa.cli.output import tell as _tell
from qa.errors import QAError


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``qa`` with ``argv``; a ``QAError`` becomes one line on stderr and status 1.

    A mistake in the arguments exits with status 2 and the usage of the command it was made in.
    """
    args = parse_arguments(build_parser(), argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return COMMANDS[args.command](args)
            finally:
                # Also when the command fails: the skipped files may be why (nothing left to index).
                for warning in caught:
                    if issubclass(warning.category, UserWarning):
                        _tell(f"qa: warning: {warning.message}")
    except QAError as error:
        _tell(f"qa: error: {error}")
        return 1
    except KeyboardInterrupt:
        _tell("qa: interrupted; the index is as it was before this run")
        return 130
    except BrokenPipeError:
        # The reader stopped early (``qa passages | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # A file the library does not turn into a QAError itself (a --report path, say): still one line.
        where = f": {error.filename}" if error.filename else ""
        _tell(f"qa: error: {error.strerror or error}{where}")
        return 1


def entry_point() -> None:
    """Console-script entry: exit with ``main``'s status."""
    raise SystemExit(main())
