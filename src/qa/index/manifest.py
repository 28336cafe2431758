"""The manifest: what an index was built from and how, and the checks that its files are as written.

``manifest.json`` is written last and in one rename, so it commits a build. It
records each file's size and SHA-256 and a checksum of its own content, so a
truncated, edited or missing file is reported as damage before anything is parsed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import REBUILD, IndexCorruptError, IndexMismatchError, IndexNotFoundError

# 3: vector ids mapped to passages (slots-*.npy); the manifest records each file's
# size and SHA-256, and its own checksum.
# 4: passages in SQLite (passages-*.sqlite, opened, not parsed); every passage's sentence
# vectors stored (sentences-*/); qa's own BM25 format (bm25-*/).
# 5: documents in SQLite (documents-*.sqlite): their metadata read at opening, their text when asked.
FORMAT_VERSION = 5
MANIFEST_NAME = "manifest.json"
# The corpus files' stamps (qa.index.stamps): a cache beside the generations, not part of one.
STAMPS_NAME = "corpus-stamps.json"
MANIFEST_CHECKSUM = "manifest_sha256"
# Up to this many bytes of index files, loading (and an unchanged `qa index`) checks every
# file's SHA-256; above it, sizes only (see check_files). SHA-256 runs at 1.4 GB/s here
# (benchmarks/integrity.py): at most 0.2 s below the limit; at 100k passages (281 MB) it
# took a load from 1.0 to 1.3 s, and at 1M (about 2 GB) it would add some 1.5 s to every
# load and to every unchanged `qa index` (0.2 s otherwise).
CHECKSUM_LIMIT = 256 * 2**20
# A generation is named by the hex of the nanosecond clock when a build saved it; only names
# of this exact shape are ever taken for files qa wrote.
_GENERATION = r"[0-9a-f]{1,32}"
GENERATION_FILE = re.compile(
    rf"(?:documents|passages)-{_GENERATION}\.(?:jsonl|sqlite)|vectors-{_GENERATION}\.faiss"
    rf"|slots-{_GENERATION}\.npy|bm25-{_GENERATION}|sentences-{_GENERATION}"
)
_DOCUMENTS_FILE = re.compile(rf"documents-({_GENERATION})\.sqlite")


@dataclass(frozen=True)
class IndexSettings:
    """How documents become passages and what each retriever reads of a passage.

    A change of ``max_tokens``, ``min_words`` or ``pipeline_version`` re-splits
    every document; a change of the title flags only re-indexes.
    """

    max_tokens: int
    min_words: int
    # Measured on eval/questions.jsonl: the headline in the BM25 text helps a
    # little; in the embedded text it hurts (every paragraph of an article
    # then resembles any question about the article's subject).
    title_in_dense: bool = False
    title_in_bm25: bool = True
    pipeline_version: int = 1

    def splits_like(self, other: IndexSettings) -> bool:
        """Whether both settings split documents into the same passages."""
        return (self.max_tokens, self.min_words, self.pipeline_version) == (
            other.max_tokens,
            other.min_words,
            other.pipeline_version,
        )


@dataclass(frozen=True)
class FileCheck:
    """Size and SHA-256 of one index file as it was written."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an index was built from and how; written last, it commits a build."""

    model: str
    dimension: int
    corpus_fingerprint: str
    settings: IndexSettings
    documents: int
    passages: int
    files: dict[str, str]
    built_at: str
    normalized: bool = True
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    # Every file of the generation, by path relative to the index folder (bm25's inner files too).
    file_checks: dict[str, FileCheck] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """A manifest from its JSON object, every field of the type qa writes.

        Raises:
            KeyError: A field is missing.
            TypeError: A field is of another type, or unknown.
            ValueError: A value is out of range, or a file name is not one qa writes.
        """
        _known_fields(_typed(data, "the manifest", dict), cls, "fields")
        files = _typed(data["files"], "files", dict)
        if generation_of(files) is None:
            raise ValueError(f"files is {_shown(files)}, not the names of one generation of index files")
        return cls(
            model=_typed(data["model"], "model", str),
            dimension=_count(data["dimension"], "dimension"),
            corpus_fingerprint=_typed(data["corpus_fingerprint"], "corpus_fingerprint", str),
            settings=settings_from_json(data["settings"]),
            documents=_count(data["documents"], "documents"),
            passages=_count(data["passages"], "passages"),
            files=files,
            built_at=_typed(data["built_at"], "built_at", str),
            normalized=_typed(data["normalized"], "normalized", bool),
            metric=_typed(data["metric"], "metric", str),
            format_version=_count(data["format_version"], "format_version"),
            file_checks=_file_checks_from_json(data["file_checks"], files),
        )


def generation_files(generation: str) -> dict[str, str]:
    """The names of the files of one generation, by kind (``Manifest.files``)."""
    return {
        "documents": f"documents-{generation}.sqlite",
        "passages": f"passages-{generation}.sqlite",
        "vectors": f"vectors-{generation}.faiss",
        "slots": f"slots-{generation}.npy",
        "bm25": f"bm25-{generation}",
        "sentences": f"sentences-{generation}",
    }


def former_generation_files(generation: str) -> list[str]:
    """Names earlier formats gave files of a generation: removed with it, like its current names."""
    return [f"passages-{generation}.jsonl", f"documents-{generation}.jsonl"]


def generation_of(files: object) -> str | None:
    """The generation whose file names ``files`` is, exactly; ``None`` for anything else."""
    if not isinstance(files, dict):
        return None
    match = _DOCUMENTS_FILE.fullmatch(str(files.get("documents")))
    return match.group(1) if match and files == generation_files(match.group(1)) else None


_JSON_TYPES: dict[type, str] = {str: "a string", int: "an integer", bool: "true or false", dict: "an object"}


def _typed(value: Any, name: str, kind: type) -> Any:
    # JSON true and false are Python bools, which are ints too: neither may stand for the other.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"{name} is {_shown(value)}, not {_JSON_TYPES[kind]}")
    return value


def _count(value: Any, name: str) -> int:
    count: int = _typed(value, name, int)
    if count < 0:
        raise ValueError(f"{name} is {count}, below 0")
    return count


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _known_fields(data: dict[str, Any], cls: type, what: str) -> None:
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"unknown {what} {', '.join(map(repr, unknown))}")


def settings_from_json(value: Any) -> IndexSettings:
    """Settings from their JSON object (as ``dataclasses.asdict`` wrote them), every field checked.

    Raises:
        KeyError: A field is missing.
        TypeError: A field is of another type, or unknown.
        ValueError: A count is negative.
    """
    data = _typed(value, "settings", dict)
    _known_fields(data, IndexSettings, "settings")
    # The title flags and pipeline version may be absent: they were added with defaults.
    values = {**dataclasses.asdict(IndexSettings(max_tokens=0, min_words=0)), **data}
    return IndexSettings(
        max_tokens=_count(data["max_tokens"], "max_tokens"),
        min_words=_count(data["min_words"], "min_words"),
        title_in_dense=_typed(values["title_in_dense"], "title_in_dense", bool),
        title_in_bm25=_typed(values["title_in_bm25"], "title_in_bm25", bool),
        pipeline_version=_count(values["pipeline_version"], "pipeline_version"),
    )


def _file_checks_from_json(value: Any, files: dict[str, str]) -> dict[str, FileCheck]:
    checks = {}
    for name, check in _typed(value, "file_checks", dict).items():
        parts = name.split("/")
        # Only files of this generation, inside the index folder: never a path elsewhere.
        if parts[0] not in files.values() or any(part in {"", ".", ".."} for part in parts):
            raise ValueError(f"file_checks names {_shown(name)}, not a file of this index")
        fields = _typed(check, f"the check of {name}", dict)
        if set(fields) != {"size", "sha256"}:
            raise TypeError(f"the check of {name} has fields {_shown(sorted(fields))}, not size and sha256")
        size = _count(fields["size"], f"the size of {name}")
        checks[name] = FileCheck(size=size, sha256=_typed(fields["sha256"], f"the SHA-256 of {name}", str))
    return checks


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of the index in ``index_dir``, checked for format version and against its checksum."""
    path = index_dir / MANIFEST_NAME
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexNotFoundError(f"{index_dir} is a file, not an index folder", fix="give --index the index's folder")
    if not path.is_file():
        raise IndexNotFoundError(f"no index in {index_dir}", fix="run `qa index` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format_version")
    except (OSError, ValueError, AttributeError) as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is unreadable: {error}") from error
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {index_dir} has format version {version}; this qa reads version {FORMAT_VERSION}",
            fix=REBUILD,
        )
    if data.pop(MANIFEST_CHECKSUM, None) != _json_sha256(data):
        raise damaged(index_dir, f"{MANIFEST_NAME} was edited or damaged: it does not match its checksum")
    try:
        return Manifest.from_json(data)
    except KeyError as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is incomplete: {error} is missing") from error
    except (TypeError, ValueError) as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is not as qa writes it: {error}") from error


def committed_generation(index_dir: Path) -> str | None:
    """The generation the manifest in ``index_dir`` names, even if it is damaged otherwise; ``None`` if none."""
    try:
        data = json.loads((index_dir / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    return generation_of(data.get("files")) if isinstance(data, dict) else None


def manifest_text(manifest: Manifest) -> str:
    """The manifest file: its JSON with a checksum of that JSON, so that any edit shows."""
    data = manifest.to_json()
    return json.dumps({**data, MANIFEST_CHECKSUM: _json_sha256(data)}, indent=2) + "\n"


def _json_sha256(data: dict[str, Any]) -> str:
    # Key order and spacing do not count: only what the manifest says.
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def damaged(index_dir: Path, problem: str) -> IndexCorruptError:
    """The error for a damaged index: what was found, and the fix."""
    return IndexCorruptError(f"the index in {index_dir} is damaged ({problem})", fix=REBUILD)


def file_checks(index_dir: Path, names: Iterable[str]) -> dict[str, FileCheck]:
    """Size and SHA-256 of each named file, and of every file inside each named folder."""
    paths = sorted(path for name in names for path in files_under(index_dir / name))
    return {path.relative_to(index_dir).as_posix(): FileCheck(path.stat().st_size, file_sha256(path)) for path in paths}


def files_under(path: Path) -> list[Path]:
    """The files of ``path``: itself, or every file under it if it is a folder."""
    return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(index_dir: Path, manifest: Manifest) -> None:
    """Raise ``IndexCorruptError`` unless every file of the index is as it was written.

    Sizes are always compared (a ``stat`` each, so an unchanged ``qa index``
    stays fast); contents too when the files total at most ``CHECKSUM_LIMIT``
    bytes. Above that, hashing would add about a second per 1.5 GB to every
    load, and a same-size change is left to the parsers and count checks.
    """
    for name in manifest.files.values():
        if not (index_dir / name).exists():
            raise damaged(index_dir, f"{name} is missing")
    try:
        _check_sizes(index_dir, manifest.file_checks)
        if sum(check.size for check in manifest.file_checks.values()) <= CHECKSUM_LIMIT:
            _check_contents(index_dir, manifest.file_checks)
    except FileNotFoundError as error:  # removed while being checked
        raise damaged(index_dir, f"{Path(str(error.filename)).name} is missing") from error
    except OSError as error:
        raise damaged(index_dir, str(error)) from error


def _check_sizes(index_dir: Path, checks: dict[str, FileCheck]) -> None:
    for name, check in checks.items():
        size = (index_dir / name).stat().st_size
        if size != check.size:
            raise damaged(index_dir, f"{name} has {size:,} bytes; the manifest says {check.size:,}")


def _check_contents(index_dir: Path, checks: dict[str, FileCheck]) -> None:
    for name, check in checks.items():
        if file_sha256(index_dir / name) != check.sha256:
            raise damaged(index_dir, f"{name} has changed since it was written: its SHA-256 does not match")
