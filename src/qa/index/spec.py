"""Where an index lives: the ``--store`` spec (and ``$QA_STORE``), parsed in one place.

Three forms::

    index/                          the local index in a folder (the default: ``--index``)
    milvus-lite:PATH.db             Milvus Lite, embedded, in one file
    milvus://HOST:PORT[/COLLECTION] a Milvus server or cluster

A Milvus token is read from ``$QA_MILVUS_TOKEN`` when connecting, never from the
command line, and never shown: ``describe`` and every message name the place only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qa.errors import QAError

STORE_VARIABLE = "QA_STORE"
TOKEN_VARIABLE = "QA_MILVUS_TOKEN"
# The collection (an alias of the live one) when the spec names none.
DEFAULT_COLLECTION = "qa_passages"
LITE_PREFIX = "milvus-lite:"
SERVER_PREFIX = "milvus://"
# Milvus's rule for collection and alias names.
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")
StoreKind = Literal["local", "milvus-lite", "milvus"]


@dataclass(frozen=True)
class StoreSpec:
    """A parsed ``--store``: which backend, and where.

    ``path`` is the local index folder or the Milvus Lite file; ``uri`` the
    server's address (``http://host:port``); ``collection`` the Milvus collection.
    """

    kind: StoreKind
    path: Path | None = None
    uri: str = ""
    collection: str = DEFAULT_COLLECTION

    @property
    def is_local(self) -> bool:
        """Whether this is the local index (files in a folder)."""
        return self.kind == "local"

    def describe(self) -> str:
        """The backend and place, for ``qa index`` and the Corpus tab (never a token)."""
        if self.kind == "local":
            return f"local index in {self.path}/"
        if self.kind == "milvus-lite":
            return f"Milvus Lite in {self.path}, collection {self.collection}"
        return f"Milvus at {self.uri.removeprefix('http://')}, collection {self.collection}"

    def with_collection(self, collection: str) -> StoreSpec:
        """The same place with another collection (a BEIR dataset's own)."""
        check_collection_name(collection)
        return StoreSpec(self.kind, self.path, self.uri, collection)


def parse_store(text: str) -> StoreSpec:
    """The spec ``text`` stands for; anything not starting ``milvus-lite:`` or ``milvus://`` is a local folder.

    Raises:
        QAError: A Milvus spec without a file, a host and port, or with a bad collection name.
    """
    text = text.strip()
    if text.startswith(LITE_PREFIX):
        return _lite(text[len(LITE_PREFIX) :])
    if text.startswith(SERVER_PREFIX):
        return _server(text[len(SERVER_PREFIX) :])
    if "://" in text or text.startswith("milvus:"):
        raise QAError(f"--store {text!r} is not a store qa knows", fix=STORE_FORMS)
    if not text:
        raise QAError("--store is empty", fix=STORE_FORMS)
    return StoreSpec("local", path=Path(text))


STORE_FORMS = "give a folder (the local index), milvus-lite:PATH.db or milvus://HOST:PORT[/COLLECTION]"


def _lite(rest: str) -> StoreSpec:
    path_text, _, collection = rest.partition("#")
    if not path_text.endswith(".db"):
        raise QAError(
            f"milvus-lite:{path_text} does not name a .db file",
            fix="give Milvus Lite a file ending in .db, e.g. milvus-lite:index/qa.db",
        )
    spec = StoreSpec("milvus-lite", path=Path(path_text))
    return spec.with_collection(collection) if collection else spec


def _server(rest: str) -> StoreSpec:
    address, _, collection = rest.partition("/")
    if "@" in address:
        # user:password@host would put a secret on the command line and in the process list.
        raise QAError(
            "a Milvus address takes no user or password",
            fix=f"give milvus://HOST:PORT and put the token in ${TOKEN_VARIABLE}",
        )
    match = _HOST_PORT.fullmatch(address)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise QAError(f"milvus://{address} is not HOST:PORT", fix="e.g. milvus://localhost:19530")
    spec = StoreSpec("milvus", uri=f"http://{address}")
    return spec.with_collection(collection) if collection else spec


def check_collection_name(name: str) -> None:
    """Refuse a collection name Milvus would refuse, before connecting.

    Raises:
        QAError: Not a letter or underscore followed by letters, digits and underscores.
    """
    if not _COLLECTION_NAME.fullmatch(name):
        raise QAError(
            f"{name!r} is not a Milvus collection name",
            fix="use letters, digits and underscores, starting with a letter or underscore",
        )


def store_spec(store: str | None, index_dir: Path, environ: Mapping[str, str] = os.environ) -> StoreSpec:
    """The store a command uses: ``--store``, else ``$QA_STORE``, else the local index in ``index_dir``."""
    text = store or environ.get(STORE_VARIABLE, "")
    return parse_store(text) if text.strip() else StoreSpec("local", path=index_dir)


def milvus_token(environ: Mapping[str, str] = os.environ) -> str:
    """The Milvus token from ``$QA_MILVUS_TOKEN`` (empty: none)."""
    return environ.get(TOKEN_VARIABLE, "")
