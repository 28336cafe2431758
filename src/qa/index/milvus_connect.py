"""Reaching Milvus: connecting, turning its failures into one ``QAError``, and reading a collection's record.

Every call qa makes to Milvus runs inside ``talking_to``, so that a refused connection, a
server gone mid-question or any other failure of the client is one ``StoreUnavailableError``
naming the place (never the token) and what qa was doing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qa.errors import IndexCorruptError, IndexMismatchError, QAError, StoreUnavailableError
from qa.index.milvus_schema import (
    CONNECT_TIMEOUT_SECONDS,
    MILVUS_FORMAT,
    PAGE_ROWS,
    RECORD_PROPERTY,
    MilvusRecord,
    documents_collection,
    template_for,
)
from qa.index.spec import StoreSpec, milvus_token

if TYPE_CHECKING:
    from pymilvus import MilvusClient


def connect(spec: StoreSpec) -> MilvusClient:
    """A client for the spec's Milvus (starting Milvus Lite in this process for ``milvus-lite:``).

    Raises:
        StoreUnavailableError: Milvus cannot be reached (with the place, never the token).
    """
    # gRPC's core logs to stderr itself, below Python's logging ("GOAWAY ... too_many_pings" when
    # Milvus Lite throttles the client's keep-alive pings): read once, before gRPC starts.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from pymilvus import MilvusClient

    quiet_pymilvus()
    with talking_to(spec, "connecting"):
        if spec.kind == "milvus-lite":
            assert spec.path is not None
            try:
                spec.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise QAError(f"cannot make the folder of {spec.path} ({error.strerror})") from error
            return MilvusClient(str(spec.path))
        return MilvusClient(uri=spec.uri, token=milvus_token(), timeout=CONNECT_TIMEOUT_SECONDS)


def quiet_pymilvus() -> None:
    """Silence pymilvus's own logging, which it configures when imported.

    It logs every failed call with a traceback on stderr; qa says what failed itself, in one line.
    """
    # Milvus Lite serves in this process: grpc logs what its server does not implement (a timestamp
    # call the query iterator makes, and then does without).
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "grpc"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def ensure_loaded(client: MilvusClient, spec: StoreSpec, collection: str) -> None:
    """Load the collection and its documents for searching (Milvus Lite releases them when it stops)."""
    with talking_to(spec, "loading the collection"):
        for name in (collection, documents_collection(collection)):
            if client.has_collection(name) and "Loaded" not in str(client.get_load_state(name).get("state", "")):
                client.load_collection(name)


@contextlib.contextmanager
def talking_to(spec: StoreSpec, doing: str) -> Iterator[None]:
    """Turn whatever the Milvus client raises while ``doing`` into one ``StoreUnavailableError``."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except QAError:
        raise
    except (MilvusException, OSError, RuntimeError, ValueError) as error:
        raise unavailable(spec, doing, error) from error
    except Exception as error:  # grpc's own errors, whose classes are not public API
        if type(error).__module__.startswith(("grpc", "pymilvus", "milvus_lite")):
            raise unavailable(spec, doing, error) from error
        raise


def unavailable(spec: StoreSpec, doing: str, error: BaseException) -> StoreUnavailableError:
    """The error for a failed call: the place, what qa was doing and the server's reason (token removed)."""
    reason = str(getattr(error, "message", "") or error or type(error).__name__)
    token = milvus_token()
    if token:
        reason = reason.replace(token, "***")
    reason = " ".join(reason.split())[:300]
    if spec.kind == "milvus":
        fix = "check that Milvus is running there and the address and $QA_MILVUS_TOKEN are right; then ask again"
    else:
        fix = "check that no other program is using that file; then ask again"
    return StoreUnavailableError(f"{spec.describe()}: failed while {doing} ({reason})", fix=fix)


def live_collection(client: MilvusClient, spec: StoreSpec) -> str | None:
    """The collection the spec's alias points to; ``None`` when there is none.

    Raises:
        IndexMismatchError: The name is a collection qa did not make (not an alias).
    """
    with talking_to(spec, "looking up the collection"):
        if spec.collection in client.list_aliases().get("aliases", []):
            return str(client.describe_alias(spec.collection)["collection_name"])
        exists = client.has_collection(spec.collection)
    if exists:
        raise IndexMismatchError(
            f"{spec.describe()}: {spec.collection} is a collection qa did not make (qa reaches its index by an alias)",
            fix="give --store another collection name; qa never writes to a collection it did not make",
        )
    return None


def read_record(client: MilvusClient, spec: StoreSpec, collection: str) -> MilvusRecord:
    """The record of ``collection``, checked for format.

    Raises:
        IndexCorruptError: No record, or not one qa writes.
        IndexMismatchError: A record of another format version.
    """
    with talking_to(spec, "reading the index's record"):
        properties = client.describe_collection(collection).get("properties", {}) or {}
    text = properties.get(RECORD_PROPERTY)
    if text is None:
        raise milvus_damaged(spec, f"{collection} has no qa record")
    try:
        version = json.loads(text).get("format_version")
    except (ValueError, AttributeError) as error:
        raise milvus_damaged(spec, f"its record is unreadable: {error}") from error
    if version != MILVUS_FORMAT:
        raise IndexMismatchError(
            f"{spec.describe()} has format version {version}; this qa reads version {MILVUS_FORMAT}",
            fix="run `qa index --store ... --rebuild` to build it again",
        )
    try:
        return MilvusRecord.from_json(text)
    except (KeyError, TypeError, ValueError) as error:
        raise milvus_damaged(spec, f"its record is not as qa writes it: {error}") from error


def store_model(spec: StoreSpec) -> str | None:
    """The model the spec's index was built with; ``None`` when there is no readable index.

    Raises:
        StoreUnavailableError: Milvus cannot be reached.
    """
    if spec.kind == "milvus-lite" and spec.path is not None and not spec.path.exists():
        return None
    client = connect(spec)
    try:
        collection = live_collection(client, spec)
        return read_record(client, spec, collection).model if collection else None
    except (IndexCorruptError, IndexMismatchError):
        return None


def milvus_damaged(spec: StoreSpec, problem: str) -> IndexCorruptError:
    """The error for a damaged Milvus index: what was found, and the fix."""
    return IndexCorruptError(f"the index in {spec.describe()} is damaged ({problem})", fix=REBUILD_MILVUS)


REBUILD_MILVUS = "run `qa index --store ... --rebuild` (with the same --store) to build it again"


def all_rows(
    client: MilvusClient,
    spec: StoreSpec,
    collection: str,
    expression: str,
    params: dict[str, Any],
    *,
    fields: list[str],
) -> list[dict[str, Any]]:
    """Every row of ``collection`` the expression allows (all with ``""``), read a page at a time."""
    expression, params = template_for(spec, expression, params)
    rows: list[dict[str, Any]] = []
    with talking_to(spec, "reading the index"):
        iterator = client.query_iterator(
            collection, batch_size=PAGE_ROWS, filter=expression, filter_params=params, output_fields=fields
        )
        try:
            while page := iterator.next():
                rows.extend(page)
        finally:
            iterator.close()
    return rows
