"""Bytes of a corpus file to text, in whatever encoding it was saved.

Scraped news pages come in UTF-8, UTF-16, and the legacy encodings of their
country: CP949/EUC-KR for Korean outlets, CP1252/Latin-1 for Western ones.
The order of evidence is a byte-order mark, then the escape sequences of
ISO-2022 (Japanese, Korean and Chinese mail and old pages: 7-bit bytes that are
valid ASCII, so UTF-8 would read them as garbage), then strict UTF-8 (legacy text is
practically never valid UTF-8, so a page that is valid UTF-8 but declares
another charset is a mislabelled UTF-8 page), then the charset an HTML page
declares, and last a statistical detector. Binary files are refused rather
than decoded into noise.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from qa.errors import QAError

# Longest marks first: UTF-32-LE's mark begins with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    # UTF-7's mark: without it UTF-7 cannot be told from ASCII, with it there is no doubt.
    *((mark, "utf-7") for mark in (b"+/v8", b"+/v9", b"+/v+", b"+/v/")),
)
# ISO-2022 announces a character set with an escape sequence: ESC $ F (a 94x94 set as G0),
# or ESC $ ( F, ESC $ ) F, ESC $ * F, ESC $ + F (as G0 to G3). Text is 7-bit.
_ISO2022_DESIGNATION = re.compile(rb"\x1b\$[()*+]?[@-Z]")
# Sets designated to G1 to G3 are shifted in with SO/SI (or single shifts): ISO-2022-KR and -CN.
# ESC $ ) C (KS X 1001) is ISO-2022-KR; the others are ISO-2022-CN's (GB 2312, CNS 11643, ISO-IR-165).
_ISO2022_KR_DESIGNATION = b"\x1b$)C"
# ISO-2022-JP and its extensions (-2 adds Chinese and Korean sets, -3 and -2004 JIS X 0213),
# the plainest first: the first that decodes names the file's encoding.
_ISO2022_JP_CODECS = ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_3", "iso2022_jp_2004")
# Control bytes that never occur in text in an ASCII-compatible encoding
# (tab, line feed, vertical tab, form feed, carriage return and escape do).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BINARY_SAMPLE_BYTES = 64 * 1024
# More control characters than this share means it is not text: random or
# compressed bytes hold about 10% (UTF-16 without a byte-order mark, 50%).
_MAX_CONTROL_SHARE = 0.05
# Control characters (C0 but whitespace, DEL, C1): stray ones are dropped from text.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# HTML pages declare their charset near the top; browsers look at the first 1,024
# bytes, pages saved by scrapers sometimes push it a little further down.
_DECLARATION_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.I)
# Labels that mean a superset in practice (as browsers read them): EUC-KR pages
# use CP949's extra syllables, "Latin-1" pages use CP1252's curly quotes.
_SUPERSETS = {
    "euc_kr": "cp949",
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
}
# What the detector chooses among: the legacy encodings of the Encoding Standard
# (https://encoding.spec.whatwg.org) that Python can decode, without rare ones.
WEB_LEGACY_ENCODINGS = (
    *(f"cp{number}" for number in range(1250, 1259)),
    *(f"iso8859_{number}" for number in (2, 5, 6, 7, 8, 13, 15)),
    "koi8_r",
    "koi8_u",
    "cp866",
    "cp874",
    "cp949",
    "euc_jp",
    "iso2022_jp",
    "cp932",
    "gb18030",
    "big5",
)


@dataclass(frozen=True)
class DecodedText:
    """A file's text and the encoding it was read with (Python's codec name, e.g. ``cp949``)."""

    text: str
    encoding: str

    @property
    def is_utf8(self) -> bool:
        """Whether the text was read as UTF-8."""
        return self.encoding == "utf-8"


class UndecodableError(QAError):
    """The bytes are not text in any encoding ``decode_bytes`` can find."""


def decode_bytes(data: bytes, *, html: bool = False) -> DecodedText:
    """Decode a corpus file's bytes: byte-order mark, UTF-8, the page's declared charset, a detector.

    Args:
        data: The file's content.
        html: Whether the bytes are an HTML page, whose ``<meta charset>`` or
            XML declaration names its encoding.

    Returns:
        The text, NFC-normalised and without stray control characters, and the encoding used.

    Raises:
        UndecodableError: The file is empty, binary, or in no encoding that decodes it.
    """
    if not data.strip():
        raise UndecodableError("the file is empty")
    bom = next((encoding for mark, encoding in _BOMS if data.startswith(mark)), None)
    if bom is None and (escaped := iso2022_encodings(data)):
        # Before the binary check: ISO-2022-KR's shift bytes are control bytes.
        return _decode_iso2022(data, escaped)
    if bom is None and _control_byte_share(data[:_BINARY_SAMPLE_BYTES]) > _MAX_CONTROL_SHARE:
        raise UndecodableError("binary data, not text")
    candidates = iter([bom]) if bom else _candidate_encodings(data, html)
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return DecodedText(_tidy(text.removeprefix("\ufeff")), _plain_name(encoding))
    if bom:
        raise UndecodableError(f"starts with a {bom} byte-order mark but is not valid {bom}")
    raise UndecodableError("not UTF-8, and no other encoding decodes it")


def iso2022_encodings(data: bytes) -> tuple[str, ...]:
    """The ISO-2022 codecs to try if ``data`` is 7-bit text announcing character sets by escape sequences, else ().

    Raises:
        UndecodableError: The file is ISO-2022-CN, which Python has no codec for.
    """
    if not data.isascii():
        return ()  # ISO-2022 is 7-bit: a byte over 127 means another encoding
    designations = set(_ISO2022_DESIGNATION.findall(data))
    if not designations:
        return ()
    shifted = {d for d in designations if d[2:3] in b")*+"}
    if shifted - {_ISO2022_KR_DESIGNATION}:
        raise UndecodableError("the file is in ISO-2022-CN, which qa cannot read: save it as UTF-8")
    return ("iso2022_kr",) if shifted else _ISO2022_JP_CODECS


def _decode_iso2022(data: bytes, encodings: tuple[str, ...]) -> DecodedText:
    for encoding in encodings:
        try:
            return DecodedText(_tidy(data.decode(encoding)), encoding)
        except UnicodeDecodeError:
            continue
    name = "ISO-2022-KR" if encodings == ("iso2022_kr",) else "ISO-2022-JP"
    raise UndecodableError(f"the file has the escape sequences of {name} but is not valid {name}: save it as UTF-8")


def _control_byte_share(data: bytes) -> float:
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    return controls / max(1, len(data))


def _candidate_encodings(data: bytes, html: bool) -> Iterator[str]:
    """Encodings to try in turn; the detector runs only if the earlier ones fail."""
    yield "utf-8"
    declared = declared_encoding(data) if html else None
    if declared:
        yield declared
    detected = detected_encoding(data)
    if detected:
        yield detected


def declared_encoding(data: bytes) -> str | None:
    """The encoding an HTML page declares in ``<meta charset>`` or its XML declaration, if Python knows it."""
    head = data[:_DECLARATION_BYTES]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if match is None:
        return None
    name = _codec_name(match[1].decode("ascii", errors="replace"))
    # A page whose bytes are ASCII-compatible cannot be UTF-16, whatever it says.
    return None if name is None or name.startswith(("utf-16", "utf-32")) else name


def detected_encoding(data: bytes) -> str | None:
    """The legacy web encoding charset_normalizer finds most likely, preferring CP1252 on a tie.

    Candidates are the legacy encodings web pages are written in (no DOS or
    Celtic code pages: on short text the detector picks those by accident).
    Short Western text decodes cleanly in several Latin code pages; CP1252
    wins unless another reads as more coherent language (Turkish in CP1254).
    """
    from charset_normalizer import from_bytes  # only files that are not UTF-8 pay for it

    matches = list(from_bytes(data, cp_isolation=list(WEB_LEGACY_ENCODINGS)))
    if not matches:
        return None
    best, least_chaos = matches[0], min(match.chaos for match in matches)
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= least_chaos and match.coherence >= best.coherence:
            return "cp1252"
    name = _codec_name(best.encoding)
    # Name the common code page when it reads the same (German is alike in cp1250 and cp1252).
    return "cp1252" if name and _decodes_alike(data, name, "cp1252") else name


def _decodes_alike(data: bytes, encoding: str, other: str) -> bool:
    try:
        return data.decode(encoding) == data.decode(other)
    except UnicodeDecodeError:
        return False


def _codec_name(label: str) -> str | None:
    try:
        name = codecs.lookup(label.strip()).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def _plain_name(encoding: str) -> str:
    # Report "utf-8" for UTF-8 with a byte-order mark: the mark is not an encoding.
    return "utf-8" if encoding == "utf-8-sig" else encoding


def _tidy(text: str) -> str:
    """Drop stray control characters and compose accents (NFC); refuse text that is mostly controls."""
    kept = _CONTROL_CHARS.sub("", text)
    if len(text) - len(kept) > _MAX_CONTROL_SHARE * len(text):
        raise UndecodableError("binary data, not text")
    return kept if unicodedata.is_normalized("NFC", kept) else unicodedata.normalize("NFC", kept)
