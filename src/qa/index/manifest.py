"""The manifest: what an index was built from and how, and the checks that its files are as written.

``manifest.json`` is written last and in one rename, so it commits a build. It
records each file's size and SHA-256 and a checksum of its own content, so a
truncated, edited or missing file is reported as damage before anything is parsed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import REBUILD, IndexCorruptError, IndexMismatchError, IndexNotFoundError

# 3: vector ids mapped to passages (slots-*.npy); the manifest records each file's
# size and SHA-256, and its own checksum.
FORMAT_VERSION = 3
MANIFEST_NAME = "manifest.json"
MANIFEST_CHECKSUM = "manifest_sha256"
# Up to this many bytes of index files, loading (and an unchanged `qa index`) checks every
# file's SHA-256; above it, sizes only (see check_files). SHA-256 runs at 1.4 GB/s here
# (benchmarks/integrity.py): at most 0.2 s below the limit; at 100k passages (281 MB) it
# took a load from 1.0 to 1.3 s, and at 1M (about 2 GB) it would add some 1.5 s to every
# load and to every unchanged `qa index` (0.2 s otherwise).
CHECKSUM_LIMIT = 256 * 2**20


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
        """A manifest from its JSON object."""
        checks = {name: FileCheck(**check) for name, check in data["file_checks"].items()}
        return cls(**{**data, "settings": IndexSettings(**data["settings"]), "file_checks": checks})


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of the index in ``index_dir``, checked for format version and against its checksum."""
    path = index_dir / MANIFEST_NAME
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
    except (KeyError, TypeError, AttributeError) as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is incomplete: {error}") from error


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
