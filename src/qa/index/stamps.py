"""The corpus files' stamps, kept beside the index: an unchanged corpus is listed, not read again.

``qa index`` hashes every file to learn whether the corpus changed; at a hundred
thousand files that is seconds of reading. The stamps (``corpus-stamps.json``)
record each file's size, modification time and inode with the checksum taken,
so the next build reads only the files whose stamps changed
(``qa.ingest.corpus.CorpusStamps``). They are a cache of checksums, not part of a
generation: missing, damaged or of another corpus folder, they are ignored and
every file is read, as before.

On disk (JSON, one object)::

    {"format": "qa-corpus-stamps", "version": 1, "corpus": "/abs/corpus", "taken_ns": 1764...,
     "columns": ["size", "mtime_ns", "inode", "sidecar_size", "sidecar_mtime_ns", "checksum"],
     "files": {"story.txt": [1234, 1764..., 5678, -1, 0, "ab12..."], ...}}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from qa.index.files import written
from qa.index.manifest import STAMPS_NAME
from qa.ingest.corpus import CorpusStamps, FileStamp

STAMPS_FORMAT = "qa-corpus-stamps"
STAMPS_VERSION = 1
_COLUMNS = [field.name for field in dataclasses.fields(FileStamp)]


def read_stamps(index_dir: Path) -> CorpusStamps | None:
    """The stamps recorded in ``index_dir``; ``None`` if there are none or they cannot be used."""
    try:
        data = json.loads((index_dir / STAMPS_NAME).read_text(encoding="utf-8"))
        if (data["format"], data["version"], data["columns"]) != (STAMPS_FORMAT, STAMPS_VERSION, _COLUMNS):
            return None
        files = {source: FileStamp(*row) for source, row in data["files"].items()}
        return CorpusStamps(str(data["corpus"]), int(data["taken_ns"]), files)
    except (OSError, ValueError, KeyError, TypeError):  # missing, damaged, or written by another version
        return None


def write_stamps(index_dir: Path, stamps: CorpusStamps) -> None:
    """Record ``stamps`` in ``index_dir`` (atomically: the old record or the new one, never half of one)."""
    data = {
        "format": STAMPS_FORMAT,
        "version": STAMPS_VERSION,
        "corpus": stamps.corpus,
        "taken_ns": stamps.taken_ns,
        "columns": _COLUMNS,
        "files": {source: list(dataclasses.astuple(stamp)) for source, stamp in stamps.files.items()},
    }
    with written(index_dir / STAMPS_NAME) as temporary:
        temporary.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
