"""Read the corpus: text, Markdown and HTML files, with optional metadata sidecars.

A sidecar ``NAME.meta.json`` next to ``NAME.txt`` (or .md, .html) holds facts
that are not in the text, such as a URL. Its fields (``title``, ``outlet``,
``author``, ``date``, ``url``) win over what is read from the text; a value of
the wrong type or shape is ignored with a warning naming the file and field.

One bad file never stops a build: a file that cannot be read (empty, binary,
undecodable, no article text, or an unexpected error in a parser) is left out
with a warning that names it and says why, and the other files are read. So
is a folder that cannot be listed (``qa.ingest.listing`` finds the files); a
corpus folder that cannot be listed at all is an error, never an empty corpus.
Symbolic links are followed while they stay inside the corpus folder, and no
file is read twice.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

from qa.errors import QAError
from qa.ingest.clean import CleanedText, clean_text, parse_date
from qa.ingest.decode import decode_bytes
from qa.ingest.folders import SkippedFileWarning
from qa.ingest.listing import HTML_SUFFIXES, MARKDOWN_SUFFIXES, CorpusFile, find_corpus_files, sidecar_path
from qa.records import Document

METADATA_FIELDS = ("title", "outlet", "author", "date", "url")
# The longest value a sidecar field may hold. No headline, name or address comes near
# these; a longer value is a mistake (an article pasted into "title") and is ignored.
METADATA_MAX_CHARS = {"title": 500, "outlet": 200, "author": 300, "date": 40, "url": 2048}
_WEB_ADDRESS = re.compile(r"https?://\S+", re.I)
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Control characters (escape, bell, NUL...) are dropped from sidecar values, as from text.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class MetadataWarning(UserWarning):
    """A sidecar field holds a value of the wrong type or shape; it was ignored."""


class PlainTextFallbackWarning(UserWarning):
    """An HTML page the extractor could not read was read as plain text instead."""


class HtmlExtractionError(QAError):
    """trafilatura cannot read a page: nested too deep for lxml, or it failed on it."""


def load_documents(corpus_dir: Path, *, follow_links: bool = False) -> list[Document]:
    """Read and clean every supported file under ``corpus_dir``; unreadable files are skipped with a warning."""
    documents = []
    for corpus_file in find_corpus_files(corpus_dir, follow_links=follow_links):
        document = load_document(corpus_file)
        if document is not None:
            documents.append(document)
    return documents


def load_document(corpus_file: CorpusFile) -> Document | None:
    """Read, clean and attribute one file; ``None``, with a warning naming it and why, if it cannot be read.

    Any error while reading one file, expected or not, is that file's
    problem: it becomes the warning, and the caller goes on with the others.
    """
    try:
        return read_document(corpus_file)
    except (OSError, QAError) as error:
        reason = str(error)
    except Exception as error:  # a parser bug on one page must not stop the build
        reason = f"unexpected {type(error).__name__} while reading it: {error}"
    warnings.warn(f"skipped {corpus_file.source}: {reason}", SkippedFileWarning, stacklevel=2)
    return None


def read_document(corpus_file: CorpusFile) -> Document:
    """Read, decode, clean and attribute one file.

    Raises:
        QAError: The file is empty, binary or undecodable, its sidecar is
            malformed, or it holds no article text.
        OSError: The file cannot be read.
    """
    suffix = corpus_file.path.suffix.lower()
    decoded = decode_bytes(corpus_file.path.read_bytes(), html=suffix in HTML_SUFFIXES)
    sidecar_name = str(sidecar_path(PurePosixPath(corpus_file.source)))
    sidecar = read_sidecar(corpus_file.sidecar, name=sidecar_name) if corpus_file.sidecar else {}
    cleaned = parse_text(decoded.text, suffix, url=sidecar.get("url", ""), source=corpus_file.source)
    if not cleaned.paragraphs:
        raise QAError("no article text found (only boilerplate, or too little text)")
    found = {name: getattr(cleaned, name, "") for name in METADATA_FIELDS}
    found.update({name: value for name, value in sidecar.items() if value})
    return Document(
        doc_id=corpus_file.doc_id,
        source=corpus_file.source,
        paragraphs=cleaned.paragraphs,
        checksum=corpus_file.checksum,
        encoding=decoded.encoding,
        **found,
    )


def parse_text(raw: str, suffix: str, *, url: str = "", source: str = "") -> CleanedText:
    """Turn a file's text into paragraphs and metadata, by file type (``source`` names it in warnings)."""
    if suffix in HTML_SUFFIXES:
        return parse_html(raw, url=url, source=source)
    if suffix in MARKDOWN_SUFFIXES:
        return parse_markdown(raw)
    return clean_text(raw)


def read_sidecar(path: Path, *, name: str = "") -> dict[str, str]:
    """Read a metadata sidecar if there is one; a malformed sidecar is an error, not ignored.

    A field whose value has the wrong type (a number, a list), is too long
    (``METADATA_MAX_CHARS``), or is not a date or a web address where one is
    due, is left out with a ``MetadataWarning`` naming the file (``name``,
    else the file name) and the field; the other fields are read.

    Raises:
        QAError: The sidecar is not valid JSON, or not a JSON object.
    """
    if not path.is_file():
        return {}
    name = name or path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is no error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QAError(f"metadata file {name} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise QAError(f"metadata file {name} must hold a JSON object")
    fields = {field: sidecar_value(field, data.get(field), sidecar=name) for field in METADATA_FIELDS}
    return {field: value for field, value in fields.items() if value}


def sidecar_value(field: str, value: object, *, sidecar: str) -> str:
    """A sidecar field's value as text, or "" (with a ``MetadataWarning``) when it has the wrong type or shape."""
    if value is None or value == "":
        return ""
    text = _CONTROL_CHARACTERS.sub("", " ".join(value.split())) if isinstance(value, str) else ""
    if not isinstance(value, str):
        problem = f"it should be text, not {_json_kind(value)}"
    elif len(text) > METADATA_MAX_CHARS[field]:
        problem = f"{len(text):,} characters, more than the {METADATA_MAX_CHARS[field]:,} a {field} may have"
    elif field == "date":
        day = sidecar_date(text)
        if day:
            return day
        problem = f"{text!r} is not a date (write it as 2020-08-02)"
    elif field == "url" and not _WEB_ADDRESS.fullmatch(text):
        problem = f"{text!r} is not a web address (https://...)"
    else:
        return text
    warnings.warn(f'{sidecar}: ignored "{field}": {problem}', MetadataWarning, stacklevel=2)
    return ""


def sidecar_date(text: str) -> str:
    """A sidecar's date as it will be stored, or "" when ``text`` names no real day (``9999-99-99``, ``12345``).

    ``2020-08-02`` and ISO date-times are kept as given; other ways of writing
    a date (``August 2, 2020``) become ``YYYY-MM-DD``.
    """
    day = text[:10]
    if _ISO_DAY.fullmatch(day):
        if parse_date(day) != day:
            return ""  # no such day, or out of range
        if len(text) == len(day):
            return text
        try:  # a date-time: the date filter reads its first ten characters
            datetime.fromisoformat(text)
        except ValueError:
            return ""
        return text
    return parse_date(text)


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def parse_markdown(raw: str) -> CleanedText:
    """Paragraphs of a Markdown file; its first level-1 heading, if it opens the file, is the title.

    Markdown is written, not scraped, so no boilerplate rules apply to it.
    """
    blocks = [" ".join(block.split()) for block in re.split(r"\n\s*\n", raw.replace("\r\n", "\n"))]
    blocks = [block for block in blocks if block]
    title = ""
    if blocks and re.match(r"^#\s+\S", blocks[0]):
        title = blocks.pop(0).lstrip("#").strip()
    paragraphs = tuple(re.sub(r"^#{1,6}\s+", "", block) for block in blocks)
    return CleanedText(paragraphs=paragraphs, title=title)


def parse_html(raw: str, *, url: str = "", source: str = "") -> CleanedText:
    """An HTML page by trafilatura, or as plain text with a warning when trafilatura cannot read it."""
    try:
        return extract_html(raw, url=url)
    except HtmlExtractionError as error:
        warnings.warn(f"read {source or 'a page'} as plain text: {error}", PlainTextFallbackWarning, stacklevel=3)
    # The page's text without its markup, cleaned like scraped text.
    return clean_text(html_to_text(raw))


def extract_html(raw: str, *, url: str = "") -> CleanedText:
    """Main text and metadata of an HTML page, by trafilatura.

    Raises:
        HtmlExtractionError: lxml cannot build the page's whole tree (it stops
            256 elements deep and silently drops what is inside), or trafilatura
            failed on it.
    """
    import trafilatura  # heavy (lxml); only HTML corpora pay for it

    limit = lxml_resource_limit(raw)
    if limit:
        raise HtmlExtractionError(f"the HTML parser stops at one of its limits ({limit}) and would lose text")
    try:
        extracted = trafilatura.bare_extraction(
            raw,
            url=url or None,
            with_metadata=True,
            include_comments=False,
            # Only a date the page states as its publication date; no guessing from text.
            date_extraction_params={"extensive_search": False, "original_date": True},
        )
    except Exception as error:  # a bug in the extractor on one page: read that page another way
        raise HtmlExtractionError(f"the HTML extractor failed ({type(error).__name__}: {error})") from error
    if not isinstance(extracted, trafilatura.settings.Document):
        return CleanedText(paragraphs=())
    return _cleaned_extraction(extracted)


def _cleaned_extraction(extracted: Any) -> CleanedText:
    """Paragraphs and metadata of a trafilatura ``Document``."""
    title = (extracted.title or "").strip()
    paragraphs = [" ".join(line.split()) for line in (extracted.text or "").split("\n")]
    paragraphs = [p for p in paragraphs if p]
    if paragraphs and paragraphs[0] == title:
        paragraphs.pop(0)  # trafilatura repeats the headline as the first line
    return CleanedText(
        paragraphs=tuple(paragraphs),
        title=title,
        author=(extracted.author or "").strip(),
        date=(extracted.date or "").strip(),
        outlet=(extracted.sitename or "").strip(),
    )


def lxml_resource_limit(raw: str) -> str:
    """libxml2's message if parsing ``raw`` hits one of its limits (nesting depth), else "".

    libxml2 does not fail there: it stops building the tree and what is
    inside is lost without a word, so the page must be read another way.
    """
    import lxml.etree
    import lxml.html

    parser = lxml.html.HTMLParser(encoding="utf-8", collect_ids=False)
    try:
        lxml.html.document_fromstring(raw.encode("utf-8"), parser=parser)
    except lxml.etree.ParserError:
        return ""  # nothing to parse: trafilatura will find no text either
    limits = [entry.message for entry in parser.error_log if entry.type_name == "ERR_RESOURCE_LIMIT"]
    # "Excessive depth in document: 256, use XML_PARSE_HUGE option": the advice is for libxml2's callers.
    return re.sub(r",?\s*(?:use|try) XML_PARSE_HUGE.*", "", limits[0]).strip() if limits else ""


# Elements whose text is never part of the page's prose.
_HIDDEN_ELEMENTS = frozenset({"script", "style", "noscript", "template", "svg", "iframe"})
# Elements that end a block of text (a paragraph, a heading, a list item, a cell).
_BLOCK_ELEMENTS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "table", "td", "th", "title", "tr", "ul",
})  # fmt: skip


class _TextCollector(HTMLParser):
    """The text of a page with a blank line at each block element; no tree, so no depth limit."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(" ".join(data.split()))


def html_to_text(raw: str) -> str:
    """The visible text of an HTML page, a blank line between blocks, however deep its nesting."""
    collector = _TextCollector()
    collector.feed(raw)
    collector.close()
    return " ".join(collector.parts)
