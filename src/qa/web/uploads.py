"""Documents added to and removed from the corpus folder from the browser, and the record of what qa wrote.

An upload is checked before anything is written: a plain file name (no folder,
not hidden, a suffix ``qa index`` reads, or ``NAME.meta.json``), at most
``UPLOAD_MAX_BYTES``, and readable by the very rules ``qa index`` applies
(``qa.ingest.corpus.load_document``: decoding, binary and empty files, a
malformed sidecar, no article text). A file ``qa index`` would skip is refused
with its reason and never reaches the corpus folder.

Files are written under a hidden temporary name, flushed, then given their name
by a hard link that fails if the name exists (or by a rename, when replacing was
asked for): no file is ever half-written or overwritten by surprise. What qa
wrote is recorded in ``LEDGER_NAME`` (hidden, so ``qa index`` skips it) by name
and SHA-256; a file not recorded there, or changed since, belongs to the person
and is replaced or removed only when they confirmed it (``replace`` and
``confirmed`` arguments, which the Corpus tab fills after asking).
"""

from __future__ import annotations

import os
import tempfile
import threading
import unicodedata
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from qa.errors import QAError
from qa.ingest.corpus import load_document, read_sidecar
from qa.ingest.folders import SkippedFileWarning
from qa.ingest.listing import SIDECAR_SUFFIX, SUPPORTED_SUFFIXES, CorpusFile, sidecar_path
from qa.records import Document
from qa.web.corpus_files import (
    checksum,
    is_ours,
    read_ledger,
    sync_directory,
    write_error,
    write_file,
    write_ledger,
)

# A news article is 5 to 100 kB; 2 MB is some 5,000 passages, under a minute to embed
# here. Bigger files go into the corpus folder by hand, then `qa index`.
UPLOAD_MAX_BYTES = 2 * 1024 * 1024
UPLOAD_MAX_FILES = 100
# Longest file name taken, in UTF-8 bytes: most file systems stop at 255.
NAME_MAX_BYTES = 200
# One writer at a time in this process: two sessions adding the same name, or the ledger.
_WRITING = threading.Lock()
_GONE = "its file is no longer in the corpus folder"


@dataclass(frozen=True)
class Upload:
    """A file sent from the browser: the name it is to have in the corpus folder, and its bytes."""

    name: str
    data: bytes

    @property
    def is_sidecar(self) -> bool:
        """Whether it is a metadata sidecar (``NAME.meta.json``) rather than a document."""
        return self.name.endswith(SIDECAR_SUFFIX)


@dataclass(frozen=True)
class Refused:
    """A file that was not added or removed, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class AddPlan:
    """What adding a batch of uploads would do, checked and not yet done.

    Attributes:
        write: The uploads to write, sidecars first (a document is never seen without its sidecar).
        replaces: Names among ``write`` that are already in the corpus folder:
            written only when replacing them was confirmed.
        unchanged: Names already in the corpus folder with the very same bytes (nothing to do).
        refused: Uploads that are not added, with the reason.
        notes: What the person should know about the added files (a sidecar
            field ignored, a file read as another encoding than UTF-8).
    """

    write: tuple[Upload, ...]
    replaces: tuple[str, ...]
    unchanged: tuple[str, ...]
    refused: tuple[Refused, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RemovePlan:
    """What removing documents would delete: their files and the sidecars only they use.

    Attributes:
        files: Paths in the corpus folder to delete.
        foreign: Those of ``files`` qa did not write (or that changed since): deleted only once confirmed.
        refused: Documents whose file cannot be removed from here, with the reason.
        missing: Documents whose file is gone already (the index still lists them).
    """

    files: tuple[str, ...]
    foreign: tuple[str, ...]
    refused: tuple[Refused, ...]
    missing: tuple[str, ...] = ()


def read_uploads(
    paths: Sequence[str | Path], *, max_bytes: int = UPLOAD_MAX_BYTES
) -> tuple[list[Upload], list[Refused]]:
    """The files the browser sent (paths in Gradio's upload folder), each within the size limit.

    A file over ``max_bytes``, beyond the first ``UPLOAD_MAX_FILES``, or that
    cannot be read is refused with the reason.
    """
    uploads: list[Upload] = []
    refused: list[Refused] = []
    for number, path in enumerate(paths):
        name = Path(path).name
        if number >= UPLOAD_MAX_FILES:
            refused.append(Refused(name, f"only {UPLOAD_MAX_FILES} files are added at a time"))
            continue
        try:
            with open(path, "rb") as file:
                data = file.read(max_bytes + 1)
        except OSError as error:
            refused.append(Refused(name, f"could not be read ({error.strerror or error})"))
            continue
        if len(data) > max_bytes:
            refused.append(Refused(name, f"{too_big(Path(path).stat().st_size, max_bytes)}"))
            continue
        uploads.append(Upload(name, data))
    return uploads, refused


def too_big(size: int, limit: int) -> str:
    """Why a file of ``size`` bytes is not added here, and how to add it anyway."""
    return (
        f"{_megabytes(size)}, over the {_megabytes(limit)} a file may have here: copy it into the corpus "
        "folder yourself and run `qa index` (or restart the app)"
    )


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size % (1024 * 1024) else f"{size // (1024 * 1024)} MB"


def name_problem(name: str) -> str:
    """Why ``name`` may not be a file name in the corpus folder; "" when it may."""
    rules = (
        (
            name in {"", ".", ".."} or any(mark in name for mark in ("/", "\\", "\0")),
            "a plain file name is needed (no folder)",
        ),
        (name.startswith("."), "a name starting with a dot is a hidden file, which qa index skips"),
        (any(unicodedata.category(c) in {"Cc", "Cf"} for c in name), "the name holds control or invisible characters"),
        (name != name.strip(), "the name starts or ends with a space"),
        (len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES, f"the name is over {NAME_MAX_BYTES} bytes long"),
    )
    return next((problem for broken, problem in rules if broken), "") or _suffix_problem(name)


def _suffix_problem(name: str) -> str:
    if name.endswith(SIDECAR_SUFFIX):
        stem = name[: -len(SIDECAR_SUFFIX)]
        return "" if stem and not stem.startswith(".") else f"a metadata file is named NAME{SIDECAR_SUFFIX}"
    if name.lower().endswith(SIDECAR_SUFFIX):
        return f"a metadata file is named NAME{SIDECAR_SUFFIX}, in lower case"
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kind = f"not {suffix}" if suffix else "and this name has no suffix"
        return f"qa reads .txt, .md and .html files and NAME{SIDECAR_SUFFIX} metadata, {kind}"
    return ""


def plan_additions(corpus_dir: Path, uploads: Sequence[Upload]) -> AddPlan:
    """Check a batch of uploads against the names, the rules of ``qa index`` and the corpus folder.

    Nothing is written. Each document is read as ``qa index`` would read it
    from the corpus folder, with the sidecar it would get there (the one sent
    with it, else the one already beside its name).
    """
    refused: list[Refused] = []
    accepted: dict[str, Upload] = {}
    for upload in uploads:
        problem = name_problem(upload.name) or ("sent twice" if upload.name in accepted else "")
        if problem:
            refused.append(Refused(upload.name, problem))
        else:
            accepted[upload.name] = upload
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qa-upload-") as staging:
        staged = {name: _stage(Path(staging), upload) for name, upload in accepted.items()}
        sidecars = {name: upload for name, upload in accepted.items() if upload.is_sidecar}
        for name in sidecars:
            problem = _sidecar_problem(staged[name], name, notes)
            if problem:
                refused.append(Refused(name, problem))
                del accepted[name]
        for name, upload in list(accepted.items()):
            if upload.is_sidecar:
                continue
            problem = _document_problem(
                corpus_dir, name, staged=staged, sidecars=sidecars, accepted=accepted, notes=notes
            )
            if problem:
                refused.append(Refused(name, problem))
                del accepted[name]
    for name in [name for name, upload in accepted.items() if upload.is_sidecar]:
        if not _described(corpus_dir, name, accepted):
            stem = name[: -len(SIDECAR_SUFFIX)]
            refused.append(Refused(name, f"it describes no document: add {stem}.txt (or .md, .html) with it"))
            del accepted[name]
    return _with_corpus_state(corpus_dir, accepted, refused, notes)


def _stage(folder: Path, upload: Upload) -> Path:
    path = folder / upload.name
    path.write_bytes(upload.data)
    return path


def _sidecar_problem(path: Path, name: str, notes: list[str]) -> str:
    """Why a sent sidecar is refused (as ``qa index`` would skip its document), "" if it is not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            read_sidecar(path, name=name)
        except QAError as error:
            return str(error)
    _note(notes, [str(warning.message) for warning in caught])
    return ""


def _document_problem(
    corpus_dir: Path,
    name: str,
    *,
    staged: dict[str, Path],
    sidecars: dict[str, Upload],
    accepted: dict[str, Upload],
    notes: list[str],
) -> str:
    """Why a sent document is refused: what ``qa index`` would say when skipping it; "" if it is read."""
    sidecar_name = sidecar_path(PurePosixPath(name)).name
    if sidecar_name in sidecars and sidecar_name not in accepted:
        return f"its metadata file {sidecar_name} is refused"
    sidecar: Path | None = staged.get(sidecar_name)
    if sidecar is None and (corpus_dir / sidecar_name).is_file():
        sidecar = corpus_dir / sidecar_name  # qa index would give it this one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        document = load_document(CorpusFile(staged[name], name, "", sidecar))
    messages = [str(warning.message) for warning in caught]
    if document is None:
        skipped = [m for w, m in zip(caught, messages, strict=True) if issubclass(w.category, SkippedFileWarning)]
        reason = skipped[-1] if skipped else "qa index could not read it"
        return reason.removeprefix(f"skipped {name}: ")
    _note(notes, messages)
    _note(notes, _encoding_note(document))
    return ""


def _encoding_note(document: Document) -> list[str]:
    if document.encoding == "utf-8":
        return []
    return [f"{document.source} was read as {document.encoding} (not UTF-8): check its text, or save it as UTF-8"]


def _note(notes: list[str], messages: Sequence[str]) -> None:
    notes.extend(message for message in messages if message not in notes)


def _described(corpus_dir: Path, sidecar: str, accepted: dict[str, Upload]) -> bool:
    """Whether a sidecar has a document to describe, among the uploads or in the corpus folder."""
    stem = sidecar[: -len(SIDECAR_SUFFIX)]
    if any(_stem_of_document(upload.name) == stem for upload in accepted.values()):
        return True
    try:
        names = [entry.name for entry in os.scandir(corpus_dir)]
    except OSError:
        return False
    return any(_stem_of_document(name) == stem for name in names)


def _stem_of_document(name: str) -> str | None:
    """``story`` for a document file ``story.txt`` (any suffix qa reads); ``None`` for any other file."""
    suffix = PurePosixPath(name).suffix
    return name[: -len(suffix)] if suffix and suffix.lower() in SUPPORTED_SUFFIXES else None


def _with_corpus_state(
    corpus_dir: Path, accepted: dict[str, Upload], refused: list[Refused], notes: list[str]
) -> AddPlan:
    """The plan, with each accepted upload sorted by what is at its name in the corpus folder now."""
    write: list[Upload] = []
    replaces: list[str] = []
    unchanged: list[str] = []
    for name, upload in accepted.items():
        target = corpus_dir / name
        if target.is_dir():
            refused.append(Refused(name, "a folder of that name is in the corpus folder"))
            continue
        if os.path.lexists(target):
            if not target.is_symlink() and _same_bytes(target, upload.data):
                unchanged.append(name)
                continue
            replaces.append(name)
        write.append(upload)
    write.sort(key=lambda upload: not upload.is_sidecar)
    return AddPlan(tuple(write), tuple(replaces), tuple(unchanged), tuple(refused), tuple(notes))


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def add_files(corpus_dir: Path, plan: AddPlan, *, replace: Collection[str]) -> tuple[list[str], list[Refused]]:
    """Write a plan's uploads into the corpus folder; the names written, and those not written with why.

    A name in ``plan.replaces`` is written only if it is in ``replace`` (the
    person confirmed it); a name that appeared in the corpus folder since the
    plan was made is left as it is.

    Raises:
        QAError: The corpus folder or its record of added files cannot be
            written (full disk, read-only); what was written before stays, recorded.
    """
    written: list[str] = []
    skipped: list[Refused] = []
    with _WRITING:
        ledger = read_ledger(corpus_dir)
        try:
            for upload in plan.write:
                replacing = upload.name in plan.replaces
                if replacing and upload.name not in replace:
                    skipped.append(Refused(upload.name, "already in the corpus folder; replacing it was not confirmed"))
                    continue
                try:
                    write_file(corpus_dir / upload.name, upload.data, replace=replacing)
                except FileExistsError:
                    skipped.append(Refused(upload.name, "a file of that name appeared in the corpus folder meanwhile"))
                    continue
                except OSError as error:
                    raise write_error(corpus_dir, upload.name, error) from error
                ledger[upload.name] = checksum(upload.data)
                written.append(upload.name)
        finally:
            if written:
                write_ledger(corpus_dir, ledger)
    return written, skipped


def plan_removals(corpus_dir: Path, doc_ids: Sequence[str]) -> RemovePlan:
    """The files that removing these documents (ids of the index: paths in the corpus folder) would delete.

    A document's sidecar goes with it unless another document shares it
    (``story.txt`` and ``story.md`` share ``story.meta.json``).
    """
    ledger = read_ledger(corpus_dir)
    files: list[str] = []
    refused: list[Refused] = []
    missing: list[str] = []
    for doc_id in doc_ids:
        problem = _removable_problem(corpus_dir, doc_id)
        if problem == _GONE:
            missing.append(doc_id)
        elif problem:
            refused.append(Refused(doc_id, problem))
            continue
        files.append(doc_id)
    for doc_id in list(files):
        sidecar = str(sidecar_path(PurePosixPath(doc_id)))
        if sidecar not in files and (corpus_dir / sidecar).is_file() and not _shared(corpus_dir, sidecar, files):
            files.append(sidecar)
    foreign = tuple(name for name in files if not is_ours(corpus_dir, name, ledger))
    return RemovePlan(tuple(files), foreign, tuple(refused), tuple(missing))


def _removable_problem(corpus_dir: Path, doc_id: str) -> str:
    relative = PurePosixPath(doc_id)
    if (
        not relative.parts
        or relative.is_absolute()
        or any(p in {".", ".."} or p.startswith(".") for p in relative.parts)
    ):
        return "not a file of the corpus folder"
    path = corpus_dir / doc_id
    if not os.path.lexists(path):
        return _GONE
    if path.is_dir() and not path.is_symlink():
        return "a folder, not a file"
    return ""


def _shared(corpus_dir: Path, sidecar: str, removing: Collection[str]) -> bool:
    """Whether a document that stays also uses this sidecar."""
    relative = PurePosixPath(sidecar)
    stem = relative.name[: -len(SIDECAR_SUFFIX)]
    folder = corpus_dir / relative.parent
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return True  # cannot tell: keep it
    return any(_stem_of_document(entry) == stem and str(relative.parent / entry) not in removing for entry in entries)


def remove_files(corpus_dir: Path, plan: RemovePlan, *, confirmed: Collection[str]) -> tuple[list[str], list[Refused]]:
    """Delete a plan's files; those qa did not write only if in ``confirmed``. Names removed, and those kept.

    Whether qa wrote a file is checked again now: one edited since it was
    added is the person's, and needs their confirmation like any other.

    Raises:
        QAError: A file cannot be deleted (read-only folder, no permission); what was deleted before stays so.
    """
    removed: list[str] = []
    kept: list[Refused] = []
    with _WRITING:
        ledger = read_ledger(corpus_dir)
        try:
            for name in plan.files:
                if not is_ours(corpus_dir, name, ledger) and name not in confirmed:
                    kept.append(Refused(name, "qa did not add it, and removing it was not confirmed"))
                    continue
                try:
                    (corpus_dir / name).unlink()  # a link itself, never what it points to
                except FileNotFoundError:
                    pass
                except OSError as error:
                    reason = error.strerror or error
                    raise QAError(f"could not remove {name} from the corpus folder ({reason})") from error
                ledger.pop(name, None)
                removed.append(name)
        finally:
            if removed:
                sync_directory(corpus_dir)
                write_ledger(corpus_dir, ledger)
    return removed, kept
