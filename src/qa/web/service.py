"""One long-lived index behind an interactive front end: answer, describe, rebuild.

Questions are answered from the index in memory while a rebuild writes a new
one to disk; the new index replaces the old in one assignment when it is
complete, so no question ever sees half an index. Questions may come from many
threads at once; a rebuild running meanwhile gives them the model first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.embed.encoder import Encoder, SentenceTransformerEncoder
from qa.errors import QAError
from qa.index.build import encoder_for_corpus, index_corpus, open_store, settings_for
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.index.prepare import EmptyCorpusError, IndexReport
from qa.index.spec import StoreSpec
from qa.index.store import PassageStore, SearchFilter
from qa.llm.client import ChatModel
from qa.reader.model import PassageReader
from qa.records import Document, DocumentMetadata, SearchResult
from qa.search.ask import ask
from qa.search.evidence import SentenceMemory
from qa.search.modes import Mode
from qa.search.spelling import SPELLING_WAIT_LIMIT, store_vocabulary
from qa.search.written import Writing, start_writing

# While questions are answered, a rebuild embeds this many passages per encoder call, each
# call after a pause in questions (or after QUESTION_PRIORITY_SECONDS of waiting for one).
# The OpenVINO model runs one inference at a time, so without this a question's embedding
# waits for the rebuild's batch of 32 in flight (150 ms) and questions slow to a tenth of
# their pace during rebuilds (benchmarks/load.py --rebuild; README, "Many users at once").
REBUILD_BATCH = 8
QUESTION_PRIORITY_SECONDS = 0.1
# Passages a rebuild embeds per second with the bundled model (openvino-bf16, before the streams default) in batches of
# REBUILD_BATCH: 84/s measured on this machine (2 cores) over the bundled corpus's passages,
# 76/s in batches of 32. Says how long a rebuild takes (the Corpus tab asks before a long one).
REBUILD_PASSAGES_PER_SECOND = 80.0
# The page lists at most this many documents (the corpus table, the article filter, the Remove
# choices); others are typed. With the 100,000 articles of a million passages listed, the page
# was 21 MB, served in several seconds each time, and the app never came up in 120 s.
LISTED_DOCUMENTS = 1_000


@dataclass(frozen=True)
class IndexStatus:
    """What the index holds and whether a rebuild is running."""

    documents: int
    passages: int
    model: str
    built_at: str
    rebuilding: bool
    # Which backend holds the index, and where (``StoreSpec.describe``).
    backend: str = ""


class AnswerService:
    """Answers questions from the corpus's index and rebuilds it on request."""

    def __init__(
        self,
        corpus_dir: Path,
        index_dir: Path,
        *,
        encoder: SentenceTransformerEncoder,
        reader: PassageReader | None = None,
        follow_links: bool = False,
        llm: ChatModel | None = None,
        store: StoreSpec | None = None,
    ) -> None:
        self.corpus_dir = corpus_dir
        self.index_dir = index_dir
        # The index's backend; the local index in ``index_dir`` unless another is given. A Milvus
        # store keeps only the embedding cache and the build lock in ``index_dir``.
        self.store = store or StoreSpec("local", path=index_dir)
        self.encoder = encoder
        self.reader = reader
        self.llm = llm
        self.follow_links = follow_links
        self._index: PassageStore | None = None
        self.report: IndexReport | None = None  # of the last refresh: what it did, and why if it rebuilt
        # Sentence vectors depend on the text and the model alone: they outlive a rebuild.
        self._sentences = SentenceMemory()
        self._rebuild_lock = threading.Lock()
        self._questions = Questions()

    @classmethod
    def open(
        cls,
        corpus_dir: Path,
        index_dir: Path,
        *,
        model: str | None = None,
        backend: str | None = None,
        reader: PassageReader | None = None,
        follow_links: bool = False,
        llm: ChatModel | None = None,
        store: StoreSpec | None = None,
    ) -> AnswerService:
        """A service for the corpus, with the model asked for or the one the index was built with.

        ``llm``, the user's language model, also writes answers (``writing``).
        """
        encoder = encoder_for_corpus(index_dir, model=model, backend=backend, store=store)
        return cls(
            corpus_dir, index_dir, encoder=encoder, reader=reader, follow_links=follow_links, llm=llm, store=store
        )

    @property
    def index(self) -> PassageStore:
        """The index being served."""
        if self._index is None:
            raise QAError("the index is not loaded yet")
        return self._index

    def refresh(
        self,
        *,
        rebuild: bool = False,
        progress: bool = False,
        wait: float = 0.0,
        on_wait: Callable[[str], None] | None = None,
        removing: bool = False,
    ) -> IndexReport:
        """Bring the index on disk up to date with the corpus (rebuilding it if damaged), then serve it.

        Only one refresh runs at a time; a second caller gets an error rather
        than a second build of the same files. A ``qa index`` of the same
        folder in another process is waited for up to ``wait`` seconds, then
        refused (see ``index_corpus``). An update that would drop most of the
        documents is refused unless it is a ``rebuild`` or follows files
        ``removing`` on purpose (the Corpus tab's Remove).
        """
        if not self._rebuild_lock.acquire(blocking=False):
            raise QAError("the index is already being rebuilt")
        try:
            settings, count_tokens = settings_for(self.encoder)
            # The first build answers no questions yet; later ones share the model with them.
            encoder: Encoder = self.encoder
            if self._index is not None:
                encoder = BackgroundEncoder(
                    self.encoder, self._questions, batch=REBUILD_BATCH, patience=QUESTION_PRIORITY_SECONDS
                )
            try:
                report = index_corpus(
                    self.corpus_dir,
                    self.index_dir,
                    encoder=encoder,
                    settings=settings,
                    count_tokens=count_tokens,
                    rebuild=rebuild,
                    progress=progress,
                    wait=wait,
                    on_wait=on_wait,
                    follow_links=self.follow_links,
                    allow_mass_removal=rebuild or removing,  # the Rebuild button, like `qa index --rebuild`
                    store=self.store,
                )
            except EmptyCorpusError as error:
                # Unlike `qa index`, the app serves on, so that articles can be added from the browser;
                # the index on disk is left as it was.
                return self._serve_empty(settings, str(error))
            fresh = open_store(self.store)
            self._index = fresh  # one assignment: questions in flight keep the old index
            self.report = report
            if report.passages > SPELLING_WAIT_LIMIT:  # minutes to read: in the background, not on a question
                threading.Thread(target=store_vocabulary, args=(fresh,), name="spelling", daemon=True).start()
            return report
        finally:
            self._rebuild_lock.release()

    def _serve_empty(self, settings: IndexSettings, problem: str) -> IndexReport:
        """Serve an index with nothing in it, and say why."""
        self._index = LocalIndex.empty(self.encoder.name, settings)
        self.report = IndexReport(
            documents=0,
            passages=0,
            added=0,
            changed=0,
            removed=0,
            skipped=0,
            embedded=0,
            seconds=0.0,
            empty_corpus=problem,
        )
        return self.report

    @property
    def rebuilding(self) -> bool:
        """Whether a refresh is running."""
        return self._rebuild_lock.locked()

    def ask(
        self,
        question: str,
        *,
        history: Sequence[str] = (),
        k: int = 5,
        mode: Mode = "hybrid",
        where: SearchFilter | None = None,
        use_reader: bool = True,
    ) -> SearchResult:
        """The answer to ``question`` from the index being served; a rebuild running meanwhile yields to it.

        ``use_reader=False`` answers without the service's reader (the chat's setting), as before it.
        """
        with self._questions:
            return ask(
                self.index,
                question,
                encoder=self.encoder,
                k=k,
                mode=mode,
                history=history,
                where=where,
                sentences=self._sentences,
                reader=self.reader if use_reader else None,
            )

    def writing(self, result: SearchResult, *, history: Sequence[str] = (), stream: bool = True) -> Writing | None:
        """The language model's answer to ``result`` on its way (``qa.search.written``); ``None`` without a model.

        ``history`` are the questions asked before ``result``'s.
        """
        if self.llm is None:
            return None
        return start_writing(
            result,
            model=self.llm,
            store=self.index,
            encoder=self.encoder,
            sentences=self._sentences,
            history=history,
            stream=stream,
        )

    def status(self) -> IndexStatus:
        """What the served index holds, and whether a rebuild is running."""
        summary = self.index.summary()
        return IndexStatus(
            summary.documents,
            summary.passages,
            summary.model,
            summary.built_at,
            self.rebuilding,
            backend=self.store.describe(),
        )

    def rebuild_seconds(self) -> float:
        """About how long a rebuild of the served index takes: every passage embedded again."""
        return self.index.summary().passages / REBUILD_PASSAGES_PER_SECOND

    def documents(self) -> list[tuple[DocumentMetadata, int]]:
        """Every indexed document with its number of passages."""
        index = self.index
        counts = index.passage_counts()
        return [(document, counts.get(document.doc_id, 0)) for document in index.documents]

    def listed_documents(self) -> list[tuple[DocumentMetadata, int]]:
        """The documents the page lists: the first ``LISTED_DOCUMENTS``, with their passage counts."""
        index = self.index
        counts = index.passage_counts()
        return [(document, counts.get(document.doc_id, 0)) for document in index.documents[:LISTED_DOCUMENTS]]

    def document(self, doc_id: str) -> Document | None:
        """An indexed document by id; ``None`` for anything else (ids are never paths on disk)."""
        return self.index.document(doc_id)

    def warm_up(self) -> None:
        """Load the models and BM25's tokenizer now, so the first question does not wait for them."""
        self.encoder.encode(["warm up"])
        self.index.bm25_candidates("warm up", depth=1, where=None)  # imports bm25s, the tokenizer: 0.3 s
        if self.reader is not None:
            self.reader.read("warm up", ["warm up"])


class Questions:
    """Counts the questions being answered, so that a rebuild can wait for a pause in them."""

    def __init__(self) -> None:
        self._answering = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._answering += 1

    def __exit__(self, *exception: object) -> None:
        with self._changed:
            self._answering -= 1
            self._changed.notify_all()

    def wait_for_pause(self, timeout: float) -> bool:
        """Wait until no question is being answered, at most ``timeout`` seconds; whether one came."""
        with self._changed:
            return self._changed.wait_for(lambda: self._answering == 0, timeout)


class BackgroundEncoder:
    """A rebuild's encoder: small batches, each sent when questions pause, so questions go first."""

    def __init__(self, encoder: Encoder, questions: Questions, *, batch: int, patience: float) -> None:
        self.name = encoder.name
        self._encoder = encoder
        self._questions = questions
        self._batch = batch
        self._patience = patience

    def encode(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors, in small batches that wait for a pause in questions."""
        if not texts:
            return self._encoder.encode(texts)
        parts = []
        for start in range(0, len(texts), self._batch):
            self._questions.wait_for_pause(self._patience)
            parts.append(self._encoder.encode(texts[start : start + self._batch]))
        return np.concatenate(parts)
