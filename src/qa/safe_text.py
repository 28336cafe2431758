"""Text made safe for a terminal: what a corpus file or a person typed must not drive it.

Questions lose these characters before they are asked (``qa.search.question``), and
everything from the corpus that the command line or the app prints goes through
``terminal_text`` (or ``json_text``).
"""

from __future__ import annotations

import json
import re

# Terminal escape sequences (colours, cursor moves, window titles), pasted from a shell.
ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)")
# Characters no one means to ask about: C0/C1 controls other than whitespace, DEL,
# soft hyphen, zero-width space, word joiner and invisible operators, bidirectional
# marks, embeddings and isolates, byte-order marks, and lone surrogates (undecodable
# bytes in a command-line argument). Zero-width (non-)joiners stay: emoji and
# Persian, Arabic and Indic spelling need them.
INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
# Breaks that move the cursor without a new line (a carriage return overwrites what was printed).
_BREAKS = str.maketrans(dict.fromkeys("\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029", " "))
_SURROGATE = re.compile("[\ud800-\udfff]")


def terminal_text(text: str) -> str:
    """``text`` safe to print: corpus text, titles and file names cannot drive the terminal.

    Escape sequences and the characters questions lose
    (controls, bidirectional overrides, invisible marks) are dropped; carriage returns
    and other breaks become spaces; undecodable bytes of a file name show as U+FFFD.
    Line breaks and tabs stay.
    """
    text = _SURROGATE.sub("\ufffd", text)
    return INVISIBLE.sub("", ESCAPE_SEQUENCE.sub("", text)).translate(_BREAKS)


def json_text(data: object, *, indent: int | None = None) -> str:
    r"""``data`` as JSON, every character of the corpus kept, those that could drive a terminal escaped.

    ``json.dumps`` escapes C0 controls but, without ``ensure_ascii``, writes DEL, C1
    controls (``\x9b`` starts an escape sequence in some terminals), bidirectional overrides
    and lone surrogates raw; they are written as ``\uXXXX`` here, which reads back the same.
    """
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
