"""The corpus files' stamps, kept beside the index: an unchanged corpus is listed, not read again.

``qa index`` hashes every file to learn whether the corpus changed; at a hundred
thousand files that is seconds of reading. The stamps (``corpus-stamps.json``)
record each file's size, modification time and inode with the checksum taken,
so the next build reads only the files whose stamps changed
(``qa.ingest.listing.CorpusStamps``). They are a cache of checksums, not part of a
generation: missing, damaged or of another corpus folder, they are ignored and
every file is read, as before.

On disk (JSON, one object, a list per column: quicker to read than an object per file)::

    {"format": "qa-corpus-stamps", "version": 1, "corpus": "/abs/corpus", "taken_ns": 1764...,
     "files": {"source": ["story.txt", ...], "size": [1234, ...], "mtime_ns": [...], "inode": [...],
               "sidecar_size": [-1, ...], "sidecar_mtime_ns": [0, ...], "checksum": ["ab12...", ...]}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qa.index.files import written
from qa.index.manifest import STAMPS_NAME
from qa.ingest.listing import CorpusStamps, FileStamps, no_cycle_collection

STAMPS_FORMAT = "qa-corpus-stamps"
STAMPS_VERSION = 1
# The columns on disk, in the order of FileStamps's fields; the checksum is a column of its own.
_COLUMNS = ("source", "size", "mtime_ns", "inode", "sidecar_size", "sidecar_mtime_ns")


def read_stamps(index_dir: Path) -> CorpusStamps | None:
    """The stamps recorded in ``index_dir``; ``None`` if there are none or they cannot be used."""
    try:
        with no_cycle_collection():
            return _stamps_from_json(json.loads((index_dir / STAMPS_NAME).read_bytes()))
    except (OSError, ValueError, KeyError, TypeError):  # missing, damaged, or written by another version
        return None


def _stamps_from_json(data: Any) -> CorpusStamps | None:
    """The stamps of the JSON object ``data``; ``None`` if another version wrote it.

    Raises:
        KeyError, TypeError, ValueError: ``data`` is not stamps as qa writes them.
    """
    if (data["format"], data["version"]) != (STAMPS_FORMAT, STAMPS_VERSION):
        return None
    columns = data["files"]
    files = FileStamps(*(columns[name] for name in _COLUMNS))
    checksums = columns["checksum"]
    lengths = {len(column) for column in (*files.columns(), checksums)}
    # A value of another type only fails to match a file's stamp (and the file is read); a
    # checksum must be one.
    if len(lengths) > 1 or not set(map(type, checksums)) <= {str}:
        raise ValueError("not stamps as qa writes them")
    return CorpusStamps(str(data["corpus"]), int(data["taken_ns"]), files, checksums)


def write_stamps(index_dir: Path, stamps: CorpusStamps) -> None:
    """Record ``stamps`` in ``index_dir`` (atomically: the old record or the new one, never half of one)."""
    columns = dict(zip(_COLUMNS, stamps.files.columns(), strict=True))
    data = {
        "format": STAMPS_FORMAT,
        "version": STAMPS_VERSION,
        "corpus": stamps.corpus,
        "taken_ns": stamps.taken_ns,
        "files": {**columns, "checksum": stamps.checksums},
    }
    with written(index_dir / STAMPS_NAME) as temporary:
        temporary.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
