"""Find and read the corpus: text, Markdown and HTML files, with optional metadata sidecars.

A sidecar ``NAME.meta.json`` next to ``NAME.txt`` (or .md, .html) holds facts
that are not in the text, such as a URL. Its fields (``title``, ``outlet``,
``author``, ``date``, ``url``) win over what is read from the text.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from qa.clean import CleanedText, clean_text
from qa.errors import QAError
from qa.records import Document

TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES
SIDECAR_SUFFIX = ".meta.json"
METADATA_FIELDS = ("title", "outlet", "author", "date", "url")


@dataclass(frozen=True)
class CorpusFile:
    """A corpus file found on disk, before it is read and cleaned."""

    path: Path
    source: str
    checksum: str

    @property
    def doc_id(self) -> str:
        return str(Path(self.source).with_suffix("").as_posix())


class SkippedFileWarning(UserWarning):
    """A corpus file could not be read and was left out of the index."""


def find_corpus_files(corpus_dir: Path) -> list[CorpusFile]:
    """List supported files under ``corpus_dir`` (recursively, hidden ones skipped), sorted."""
    if not corpus_dir.is_dir():
        raise QAError(f"corpus folder not found: {corpus_dir}")
    files = []
    for path in sorted(corpus_dir.rglob("*")):
        relative = path.relative_to(corpus_dir)
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES and not _is_hidden(relative):
            files.append(CorpusFile(path, relative.as_posix(), file_checksum(path)))
    return files


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(path.suffix)] + SIDECAR_SUFFIX)


def file_checksum(path: Path) -> str:
    """SHA-256 of a file and its sidecar, so editing either marks the document changed."""
    digest = hashlib.sha256(path.read_bytes())
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        digest.update(b"\0sidecar\0" + sidecar.read_bytes())
    return digest.hexdigest()


def load_documents(corpus_dir: Path) -> list[Document]:
    """Read and clean every supported file under ``corpus_dir``; unreadable files are skipped with a warning."""
    documents = []
    for corpus_file in find_corpus_files(corpus_dir):
        document = load_document(corpus_file)
        if document is not None:
            documents.append(document)
    return documents


def load_document(corpus_file: CorpusFile) -> Document | None:
    """Read, clean and attribute one file; ``None`` (with a warning) if it cannot be read."""
    try:
        raw = corpus_file.path.read_bytes().decode("utf-8-sig")
        sidecar = read_sidecar(sidecar_path(corpus_file.path))
    except (OSError, UnicodeDecodeError, QAError) as error:
        warnings.warn(f"skipped {corpus_file.source}: {error}", SkippedFileWarning, stacklevel=2)
        return None
    cleaned = parse_text(raw, corpus_file.path.suffix.lower(), url=sidecar.get("url", ""))
    if not cleaned.paragraphs:
        warnings.warn(f"skipped {corpus_file.source}: no article text found", SkippedFileWarning, stacklevel=2)
        return None
    found = {name: getattr(cleaned, name, "") for name in METADATA_FIELDS}
    found.update({name: value for name, value in sidecar.items() if value})
    return Document(
        doc_id=corpus_file.doc_id,
        source=corpus_file.source,
        paragraphs=cleaned.paragraphs,
        checksum=corpus_file.checksum,
        **found,
    )


def parse_text(raw: str, suffix: str, *, url: str = "") -> CleanedText:
    """Turn a file's text into paragraphs and metadata, by file type."""
    if suffix in HTML_SUFFIXES:
        return extract_html(raw, url=url)
    if suffix in MARKDOWN_SUFFIXES:
        return parse_markdown(raw)
    return clean_text(raw)


def read_sidecar(path: Path) -> dict[str, str]:
    """Read a metadata sidecar if there is one; a malformed sidecar is an error, not ignored."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise QAError(f"metadata file {path.name} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise QAError(f"metadata file {path.name} must hold a JSON object")
    return {name: str(data[name]).strip() for name in METADATA_FIELDS if data.get(name)}


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


def extract_html(raw: str, *, url: str = "") -> CleanedText:
    """Main text and metadata of an HTML page, by trafilatura."""
    import trafilatura  # heavy (lxml); only HTML corpora pay for it

    extracted = trafilatura.bare_extraction(
        raw,
        url=url or None,
        with_metadata=True,
        include_comments=False,
        # Only a date the page states as its publication date; no guessing from text.
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    if not isinstance(extracted, trafilatura.settings.Document):
        return CleanedText(paragraphs=())
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
