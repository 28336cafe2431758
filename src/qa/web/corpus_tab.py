"""The Corpus tab: the indexed documents, the index's status, adding and removing documents, rebuilding.

Adding and removing change the corpus folder through ``qa.web.uploads`` (which
checks every file as ``qa index`` would read it, and writes only what it may),
then bring the index up to date through ``AnswerService.refresh``, which keeps
answering questions from the old index meanwhile. Anything that would replace
or delete a file qa did not write, and a rebuild that takes long, first asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import _StaticFiles
from gradio.utils import get_upload_folder

from qa.errors import QAError
from qa.index.prepare import IndexReport
from qa.web.chat import document_choices, outlet_choices, unlisted_hint
from qa.web.present import CORPUS_COLUMNS, as_markdown_text, corpus_rows
from qa.web.service import AnswerService
from qa.web.uploads import (
    UPLOAD_MAX_BYTES,
    AddPlan,
    Refused,
    add_files,
    plan_additions,
    plan_removals,
    read_uploads,
    remove_files,
)

# A rebuild expected to take longer than this asks first (it embeds every passage again).
# At REBUILD_PASSAGES_PER_SECOND (80 here) that is a corpus of over 4,800 passages.
LARGE_REBUILD_SECONDS = 60.0
# The file picker offers these; every file is checked again on the server.
UPLOAD_TYPES = [".txt", ".md", ".markdown", ".html", ".htm", ".json"]
# Title and file name take the room the short columns leave; in percents of the table's
# width, so that every column fits at any width (at 1280 px none is cut off).
COLUMN_WIDTHS: list[str | int] = ["31%", "13%", "13%", "10%", "9%", "24%"]
# The status line's "5 minutes ago" is brought up to date this often.
STATUS_EVERY_SECONDS = 60.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Pending:
    """An action that waits for the person's yes, and the files it asked about."""

    action: str  # "add", "remove" or "rebuild"
    names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """What a corpus action shows: its message, the question it asks (if any), and what to keep."""

    message: str
    pending: Pending | None = None
    question: str = ""
    keep_selection: bool = False  # the chosen files and documents stay chosen (nothing was done)


def corpus_tab(service: AnswerService, ask_tab: dict[str, Any]) -> None:
    """The Corpus tab: status, add and remove documents, rebuild, and the table of documents.

    Every action updates the Ask tab's filters (``ask_tab``) when the documents change.
    """
    accept_uploaded_files()
    status = gr.Markdown(status_text(service), elem_id="qa-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(
                label=f"Add documents (.txt, .md, .html up to {UPLOAD_MAX_BYTES // (1024 * 1024)} MB; NAME.meta.json)",
                file_count="multiple",
                file_types=UPLOAD_TYPES,
                height=150,
                elem_id="qa-upload",
            )
            add = gr.Button("Add to corpus", variant="primary", elem_id="qa-add")
        with gr.Column(scale=1, min_width=300):
            chosen = gr.Dropdown(
                removal_choices(service),
                multiselect=True,
                allow_custom_value=True,  # a document the list leaves out is typed: its file name
                label="Remove documents",
                info=unlisted_hint(service, instruction="type another's file name, as in the corpus folder"),
                elem_id="qa-remove-choice",
            )
            with gr.Row():
                remove = gr.Button("Remove from corpus", variant="stop", elem_id="qa-remove")
                rebuild = gr.Button("Rebuild index", elem_id="qa-rebuild")
    with gr.Group(visible=False, elem_id="qa-confirm") as confirm_box:
        question = gr.Markdown(elem_id="qa-confirm-question")
        with gr.Row():
            yes = gr.Button("Yes, go ahead", variant="primary", elem_id="qa-confirm-yes")
            no = gr.Button("Cancel", elem_id="qa-confirm-no")
    # The one place progress shows: a bar here, not one over every output.
    message = gr.Markdown(start_notice(service), elem_id="qa-rebuild-message", min_height=40)
    table = gr.Dataframe(
        value=corpus_rows(service.listed_documents()),
        headers=CORPUS_COLUMNS,
        interactive=False,
        wrap=True,
        column_widths=COLUMN_WIDTHS,
        elem_id="qa-corpus",
    )
    pending = gr.State(None)
    outputs = [status, table, message, ask_tab["documents"], ask_tab["outlets"], confirm_box, question]
    outputs += [pending, upload, chosen]
    changing: dict[str, Any] = {
        "api_visibility": "private",
        "concurrency_id": "rebuild",  # one change of the corpus or the index at a time
        "show_progress_on": [message],
    }
    rebuild.click(rebuilder(service), None, outputs, api_name="rebuild", **changing)  # as benchmarks/load.py calls it
    add.click(_adder(service), upload, outputs, api_name="add", **changing)
    remove.click(_remover(service), chosen, outputs, api_name="remove", **changing)
    yes.click(_confirmer(service), [pending, upload, chosen], outputs, api_name="confirm", **changing)
    no.click(
        lambda: (gr.update(visible=False), "", None, "Nothing was changed."),
        None,
        [confirm_box, question, pending, message],
        api_visibility="private",
    )
    # A page opened later shows the corpus as it is now, not as it was when the app started.
    gr.on(None, _lister(service), None, [status, table, chosen], api_visibility="private", show_progress="hidden")
    gr.Timer(STATUS_EVERY_SECONDS).tick(
        lambda: status_text(service), None, status, api_visibility="private", show_progress="hidden"
    )


def accept_uploaded_files() -> None:
    """Let the files of the "Add documents" widget reach its handler, with Gradio's file route still closed.

    ``qa.web.ui.launch`` blocks the whole file system (``blocked_paths``) so that
    no file is ever served; Gradio checks uploaded inputs against the same list
    and would refuse them too. Files in its upload folder are declared static,
    which skips that check for them alone; the file route still refuses them
    (blocked paths come first there), and the guard lets uploads in only when
    ``launch`` opens them.
    """
    folder = Path(get_upload_folder()).resolve()
    if folder not in _StaticFiles.all_paths:
        gr.set_static_paths([folder])


def rebuilder(service: AnswerService) -> Callable[..., tuple[Any, ...]]:
    """The Rebuild button's handler: status, corpus table, a message, the filters' new choices, and the rest.

    A rebuild expected to take over ``LARGE_REBUILD_SECONDS`` asks first. A
    ``qa index`` of the same folder running elsewhere makes it refuse at once,
    saying so, rather than hold the page while it waits.
    """

    def run_rebuild(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:  # noqa: B008
        return shown(service, rebuild_index(service, confirmed=False, progress=progress))

    return run_rebuild


def _adder(service: AnswerService) -> Callable[..., tuple[Any, ...]]:
    def run_add(files: list[str] | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:  # noqa: B008
        return shown(service, add_documents(service, files or [], confirmed=frozenset(), progress=progress))

    return run_add


def _remover(service: AnswerService) -> Callable[..., tuple[Any, ...]]:
    def run_remove(doc_ids: list[str] | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[Any, ...]:  # noqa: B008
        return shown(service, remove_documents(service, doc_ids or [], confirmed=frozenset(), progress=progress))

    return run_remove


def _confirmer(service: AnswerService) -> Callable[..., tuple[Any, ...]]:
    def run_confirmed(
        pending: Pending | None,
        files: list[str] | None,
        doc_ids: list[str] | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008
    ) -> tuple[Any, ...]:
        if pending is None:
            return shown(service, Outcome("Nothing is waiting to be confirmed."))
        if pending.action == "add":
            outcome = add_documents(service, files or [], confirmed=pending.names, progress=progress)
        elif pending.action == "remove":
            outcome = remove_documents(service, doc_ids or [], confirmed=pending.names, progress=progress)
        else:
            outcome = rebuild_index(service, confirmed=True, progress=progress)
        return shown(service, outcome)

    return run_confirmed


def _lister(service: AnswerService) -> Callable[[], tuple[Any, ...]]:
    def listing() -> tuple[Any, ...]:
        rows = corpus_rows(service.listed_documents())
        return status_text(service), rows, gr.update(choices=removal_choices(service))

    return listing


def shown(service: AnswerService, outcome: Outcome) -> tuple[Any, ...]:
    """The Corpus tab's outputs for an outcome: status, table, message, filters, confirmation, files, choices."""
    keep = outcome.keep_selection or outcome.pending is not None
    choices = removal_choices(service)
    return (
        status_text(service),
        corpus_rows(service.listed_documents()),
        outcome.message,
        gr.update(choices=document_choices(service)),
        gr.update(choices=outlet_choices(service)),
        gr.update(visible=outcome.pending is not None),
        outcome.question,
        outcome.pending,
        gr.skip() if keep else None,
        gr.update(choices=choices) if keep else gr.update(choices=choices, value=[]),
    )


def add_documents(
    service: AnswerService, files: Sequence[str], *, confirmed: frozenset[str], progress: gr.Progress | None = None
) -> Outcome:
    """Add uploaded files to the corpus folder and update the index; asks before replacing any file.

    Args:
        service: The app's service (its corpus folder and index).
        files: Paths of the uploaded files (in Gradio's upload folder).
        confirmed: Names the person agreed may be replaced.
        progress: Where the update shows its progress.
    """
    if not files:
        return Outcome("Choose the files to add first (.txt, .md or .html; NAME.meta.json for their metadata).")
    if service.rebuilding:
        return Outcome("The index is being updated: add the files when it is done.", keep_selection=True)
    try:
        uploads, refused = read_uploads(files)
        plan = plan_additions(service.corpus_dir, uploads)
    except QAError as error:
        return Outcome(f"Nothing was added: {as_markdown_text(str(error))}.", keep_selection=True)
    refused += plan.refused
    unconfirmed = [name for name in plan.replaces if name not in confirmed]
    if unconfirmed:
        return Outcome(
            _listed("Not added", refused),
            pending=Pending("add", frozenset(plan.replaces)),
            question=_replace_question(service, plan),
        )
    try:
        written, skipped = add_files(service.corpus_dir, plan, replace=confirmed)
    except QAError as error:
        return Outcome(f"Stopped: {as_markdown_text(str(error))}.", keep_selection=True)
    replaced = [name for name in written if name in plan.replaces]
    added = [name for name in written if name not in plan.replaces]
    lines = [
        _names_line("Added", added),
        _names_line("Replaced", replaced),
        _names_line("Already in the corpus, unchanged", list(plan.unchanged)),
        _listed("Not added", [*refused, *skipped]),
        _listed_notes(plan),
    ]
    if written:
        lines.append(_update_index(service, progress=progress, removing=False))
    return Outcome(_joined(lines) or "Nothing was added.")


def remove_documents(
    service: AnswerService, doc_ids: Sequence[str], *, confirmed: frozenset[str], progress: gr.Progress | None = None
) -> Outcome:
    """Delete documents' files (and the sidecars only they use) and update the index.

    Files qa did not add are deleted only once the person confirmed them (``confirmed``).
    """
    if not doc_ids:
        return Outcome("Choose the documents to remove first.")
    if service.rebuilding:
        return Outcome("The index is being updated: remove the documents when it is done.", keep_selection=True)
    known = [doc_id for doc_id in doc_ids if service.document(doc_id) is not None]
    unknown = [Refused(doc_id, "not in the index") for doc_id in doc_ids if doc_id not in known]
    try:
        plan = plan_removals(service.corpus_dir, known)
    except QAError as error:
        return Outcome(f"Nothing was removed: {as_markdown_text(str(error))}.", keep_selection=True)
    unconfirmed = [name for name in plan.foreign if name not in confirmed]
    if unconfirmed:
        files = ", ".join(as_markdown_text(name) for name in plan.foreign)
        question = (
            f"**Delete {_count(len(plan.foreign), 'file')} that qa did not add?** {files} "
            f"{'was' if len(plan.foreign) == 1 else 'were'} not added from this page (or changed since): "
            f"removing deletes {'it' if len(plan.foreign) == 1 else 'them'} from the corpus folder on disk."
        )
        return Outcome("", pending=Pending("remove", frozenset(plan.foreign)), question=question)
    try:
        removed, kept = remove_files(service.corpus_dir, plan, confirmed=confirmed)
    except QAError as error:
        return Outcome(f"Stopped: {as_markdown_text(str(error))}.", keep_selection=True)
    lines = [
        _names_line("Removed", removed),
        _names_line("Already gone from the corpus folder", list(plan.missing)),
        _listed("Not removed", [*unknown, *plan.refused, *kept]),
    ]
    if removed or plan.missing:
        lines.append(_update_index(service, progress=progress, removing=True))
    return Outcome(_joined(lines) or "Nothing was removed.")


def rebuild_index(service: AnswerService, *, confirmed: bool, progress: gr.Progress | None = None) -> Outcome:
    """Rebuild the whole index (every passage embedded again); a large one asks first."""
    seconds = service.rebuild_seconds()
    if seconds > LARGE_REBUILD_SECONDS and not confirmed:
        passages = service.status().passages
        question = (
            f"**Rebuild the whole index?** It embeds all {passages:,} passages again: about "
            f"{_duration(seconds)} on this machine (a rebuild expected to take over "
            f"{_duration(LARGE_REBUILD_SECONDS)} asks first). Questions are answered from the current index "
            "meanwhile. Adding and removing documents update the index without a rebuild."
        )
        return Outcome("", pending=Pending("rebuild"), question=question)
    try:
        if progress is not None:
            progress(0, desc="Reading the corpus")
        report = service.refresh(rebuild=True, progress=True)
    except QAError as error:
        return Outcome(f"Not rebuilt: {as_markdown_text(str(error))}.")
    if report.empty_corpus:
        return Outcome(f"The index is empty: {as_markdown_text(report.empty_corpus)}.")
    return Outcome(
        f"Rebuilt: {report.documents} documents, {report.passages} passages "
        f"({report.embedded} embedded) in {report.seconds:.1f} s."
    )


def _update_index(service: AnswerService, *, progress: gr.Progress | None, removing: bool) -> str:
    """Bring the index up to date after a change of the corpus folder; one line saying how it went."""
    try:
        if progress is not None:
            progress(0, desc="Updating the index")
        report = service.refresh(progress=True, removing=removing)
    except QAError as error:
        return (
            f"The index is not updated yet: {as_markdown_text(str(error))}. "
            "The change is in the corpus folder; press Rebuild index when that is done."
        )
    return _report_line(report)


def _report_line(report: IndexReport) -> str:
    if report.empty_corpus:
        return f"The index is empty: {as_markdown_text(report.empty_corpus)}."
    return (
        f"Index updated: {report.documents} documents, {report.passages} passages "
        f"({report.embedded} embedded) in {report.seconds:.1f} s."
    )


def _replace_question(service: AnswerService, plan: AddPlan) -> str:
    names = ", ".join(as_markdown_text(name) for name in plan.replaces)
    one = len(plan.replaces) == 1
    others = " (the other files are added with them)" if len(plan.write) > len(plan.replaces) else ""
    return (
        f"**Replace {_count(len(plan.replaces), 'file')} already in the corpus folder?** {names} "
        f"{'is' if one else 'are'} there already; the new {'one replaces it' if one else 'ones replace them'}. "
        f"Nothing is written until you answer{others}."
    )


def _names_line(label: str, names: Sequence[str]) -> str:
    return f"{label}: {', '.join(as_markdown_text(name) for name in names)}." if names else ""


def _listed(label: str, refused: Sequence[Refused]) -> str:
    if not refused:
        return ""
    items = "\n".join(f"- {as_markdown_text(r.name)}: {as_markdown_text(r.reason)}" for r in refused)
    return f"{label}:\n\n{items}"


def _listed_notes(plan: AddPlan) -> str:
    if not plan.notes:
        return ""
    return "Note:\n\n" + "\n".join(f"- {as_markdown_text(note)}" for note in plan.notes)


def _joined(lines: Sequence[str]) -> str:
    return "\n\n".join(line for line in lines if line)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} seconds" if seconds >= 2 else "a second"
    minutes = round(seconds / 60)
    return f"{minutes} minutes" if minutes < 90 else f"{seconds / 3600:.1f} hours"


def removal_choices(service: AnswerService) -> list[tuple[str, str]]:
    """The Remove dropdown's choices: (file name, with the title when there is one; document id)."""
    return [(f"{d.source} ({d.title})" if d.title else d.source, d.doc_id) for d, _ in service.listed_documents()]


def start_notice(service: AnswerService) -> str:
    """Why the index was rebuilt when the app started (damaged, another model, ...), if it was."""
    report = service.report
    if report is not None and report.empty_corpus:
        return f"No articles yet ({as_markdown_text(report.empty_corpus)}): add some here."
    if report is None or not report.rebuilt_reason:
        return ""
    return f"Rebuilt from scratch when the app started: {as_markdown_text(report.rebuilt_reason)}."


def status_text(service: AnswerService, *, now: datetime | None = None) -> str:
    """The Corpus tab's status: documents, passages, model, when the index was built, and a running rebuild."""
    state = service.status()
    listed = len(service.listed_documents())
    lines = [
        f"**{state.documents}** documents, **{state.passages}** passages. Model: `{state.model}`. "
        f"Index built {readable_time(state.built_at, now=now)}."
        + (f" Stored in: {as_markdown_text(state.backend)}." if state.backend else ""),
        "**Rebuilding…** questions are answered from the current index meanwhile." if state.rebuilding else "",
        f"The table lists the first {listed:,}." if listed < state.documents else "",
    ]
    return "\n\n".join(line for line in lines if line)


def readable_time(iso: str, *, now: datetime | None = None) -> str:
    """``2 Aug 2026, 14:05 UTC (5 minutes ago)`` for an ISO time; the text as given if it is none."""
    try:
        moment = datetime.fromisoformat(iso.strip().replace("Z", "+00:00"))
    except ValueError:
        return as_markdown_text(iso) if iso.strip() else "at an unknown time"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # qa writes UTC
    moment = moment.astimezone(timezone.utc)
    absolute = f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M} UTC"
    ago = time_ago((now or datetime.now(timezone.utc)) - moment)
    return f"{absolute} ({ago})" if ago else absolute


def time_ago(elapsed: timedelta) -> str:
    """``just now``, ``5 minutes ago``, ``3 hours ago``, ``2 days ago``; "" beyond a month or in the future."""
    seconds = elapsed.total_seconds()
    if seconds < -60 or seconds >= 31 * 86400:
        return ""  # a clock set differently, or long enough ago that the date says it
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{_count(int(seconds // size), unit)} ago"
    return "just now"
