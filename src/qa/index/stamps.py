"""The corpus files' stamps, kept beside the index: an unchanged corpus is listed, not read again.

``qa index`` hashes every file to learn whether the corpus changed; at a hundred
thousand files that is seconds of reading. The stamps (``corpus-stamps.json``)
record each file's size, modification time and inode with the checksum taken,
so the next build reads only the files whose stamps changed
(``qa.ingest.corpus.CorpusStamps``). They are a cache of checksums, not part of a
generation: missing, damaged or of another corpus folder, they are ignored and
every file is read, as before.

On disk (JSON, one object, a list per column: quicker to read than an object per file)::

    {"format": "qa-corpus-stamps", "version": 1, "corpus": "/abs/corpus", "taken_ns": 1764...,
     "files": {"source": ["story.txt", ...], "size": [1234, ...], "mtime_ns": [...], "inode": [...],
               "sidecar_size": [-1, ...], "sidecar_mtime_ns": [0, ...], "checksum": ["ab12...", ...]}}
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
        if (data["format"], data["version"]) != (STAMPS_FORMAT, STAMPS_VERSION):
            return None
        columns = [data["files"][name] for name in _COLUMNS]
        files = {source: FileStamp(*row) for source, *row in zip(data["files"]["source"], *columns, strict=True)}
        return CorpusStamps(str(data["corpus"]), int(data["taken_ns"]), files)
    except (OSError, ValueError, KeyError, TypeError):  # missing, damaged, or written by another version
        return None


def write_stamps(index_dir: Path, stamps: CorpusStamps) -> None:
    """Record ``stamps`` in ``index_dir`` (atomically: the old record or the new one, never half of one)."""
    sources = list(stamps.files)
    columns = {name: [getattr(stamps.files[source], name) for source in sources] for name in _COLUMNS}
    data = {
        "format": STAMPS_FORMAT,
        "version": STAMPS_VERSION,
        "corpus": stamps.corpus,
        "taken_ns": stamps.taken_ns,
        "files": {"source": sources, **columns},
    }
    with written(index_dir / STAMPS_NAME) as temporary:
        temporary.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
