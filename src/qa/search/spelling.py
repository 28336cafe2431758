"""Spelling variants of the corpus's words: "Jihyun" for "Ji-hyun", "Nroth" for "North", "hapened".

A question that names something the corpus never mentions is refused
(``qa.search.abstention``), so a mistyped or differently spelled name must
still count as known. The corpus vocabulary is read once per store: every word
of the passages and the metadata, hyphenated words also joined ("jihyun"), and
neighbouring capitalised words joined ("yojong" for "Yo Jong"). A word is a
variant of a corpus word when it folds to the same letters (case, hyphens,
apostrophes) or is one edit away (an insertion, deletion, substitution or
swap of neighbours; numbers must match exactly, and words under
``MIN_FUZZY_LENGTH`` letters too, since "2023" is one edit from "2020").
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qa.index.lexical import tokenize
from qa.index.store import PassageStore

# Words this short must be spelled exactly: "film" is one edit from "fill".
MIN_FUZZY_LENGTH = 5
_WORD = re.compile(r"[^\W_]+(?:[-‐‑'’][^\W_]+)*")


def fold(word: str) -> str:
    """A word reduced to its lower-case letters and digits: hyphens, apostrophes and case dropped."""
    word = re.sub(r"['’]s$", "", word)  # a possessive names the same thing
    return re.sub(r"[\W_]+", "", word.lower())


@dataclass
class Vocabulary:
    """The corpus's words, folded, with how often each occurs and how it is written in the corpus."""

    counts: Counter[str]
    spelled: dict[str, str]
    _deletions: dict[str, list[str]] | None = field(default=None, repr=False)

    def __contains__(self, word: str) -> bool:
        return fold(word) in self.counts

    def closest(self, word: str) -> str | None:
        """The corpus word one edit from ``word`` (the most frequent if several), or None.

        Numbers, words shorter than ``MIN_FUZZY_LENGTH`` and words the corpus
        already holds have no closest other word.
        """
        folded = fold(word)
        if len(folded) < MIN_FUZZY_LENGTH or not folded.isalpha() or folded in self.counts:
            return None
        candidates = {
            other
            for variant in {folded, *_deletions(folded)}
            for other in self._deletion_index().get(variant, ())
            if _one_edit_apart(folded, other)
        }
        if not candidates:
            return None
        return min(candidates, key=lambda other: (-self.counts[other], other))

    def _deletion_index(self) -> dict[str, list[str]]:
        """Each word and its one-letter deletions, to the words they come from (SymSpell's lookup)."""
        if self._deletions is None:
            index: dict[str, list[str]] = {}
            for word in self.counts:
                if len(word) >= MIN_FUZZY_LENGTH - 1 and word.isalpha():
                    for variant in {word, *_deletions(word)}:
                        index.setdefault(variant, []).append(word)
            self._deletions = index
        return self._deletions


def build_vocabulary(texts: Iterable[str]) -> Vocabulary:
    """The folded words of ``texts``, hyphenated words joined and neighbouring capitalised words joined."""
    counts: Counter[str] = Counter()
    spelled: dict[str, str] = {}

    def add(form: str, written: str) -> None:
        if form:
            counts[form] += 1
            spelled.setdefault(form, written)

    for text in texts:
        previous = ""
        for match in _WORD.finditer(text):
            written = match.group()
            for part in re.split(r"[-‐‑'’]", written):
                add(fold(part), part)
            add(fold(written), written)
            if previous and previous[0].isupper() and written[0].isupper():
                add(fold(previous) + fold(written), f"{previous} {written}")
            # A name run continues only across a space ("Kim Yo Jong"), not across punctuation.
            gap = text[match.end() : match.end() + 1]
            previous = written if gap == " " else ""
    return Vocabulary(counts, spelled)


# Up to this many passages a question reads the vocabulary itself (a few seconds, once per index).
SPELLING_WAIT_LIMIT = 20_000
_CACHE: weakref.WeakKeyDictionary[object, Vocabulary] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def store_vocabulary(store: PassageStore) -> Vocabulary:
    """The vocabulary of ``store``'s passages and metadata, read once per store object.

    A rebuilt index is a new store object, so its vocabulary is read afresh.
    """
    with _CACHE_LOCK:
        found = _CACHE.get(store)
    if found is not None:
        return found
    metadata = [" ".join((d.title, d.outlet, d.author, d.date)) for d in store.documents]
    vocabulary = build_vocabulary([*metadata, *(passage.text for passage in store.iter_passages())])
    with _CACHE_LOCK:
        _CACHE[store] = vocabulary
    return vocabulary


def ready_vocabulary(store: PassageStore) -> Vocabulary | None:
    """The store's vocabulary if it is read already or quick to read (``SPELLING_WAIT_LIMIT``), else None.

    Reading it means reading every passage: seconds at 20,000 passages, minutes at a million.
    A question never waits that long: above the limit, words are corrected once something
    else has read it (the app does, in the background, as it starts).
    """
    with _CACHE_LOCK:
        found = _CACHE.get(store)
    if found is not None or store.summary().passages > SPELLING_WAIT_LIMIT:
        return found
    return store_vocabulary(store)


@dataclass(frozen=True)
class Correction:
    """A word of the question and the corpus's spelling of it."""

    start: int
    end: int
    corpus_spelling: str


def corrections(question: str, vocabulary: Vocabulary) -> list[Correction]:
    """The question's words the corpus spells differently: joined or split names, and one-edit typos.

    "Jihyun" gets the corpus's "Ji-hyun", "Yojong" "Yo Jong", "retrun" "return".
    A word the corpus holds with the same letters and punctuation is never
    corrected, whatever its case.
    """
    found = []
    for match in _WORD.finditer(question):
        written = match.group()
        folded = fold(written)
        if folded in vocabulary.counts:
            spelling = vocabulary.spelled[folded]
            if _skeleton(spelling) != _skeleton(written):
                found.append(Correction(match.start(), match.end(), _cased_like(spelling, written)))
            continue
        closest = vocabulary.closest(written)
        if closest is not None:
            found.append(Correction(match.start(), match.end(), _cased_like(vocabulary.spelled[closest], written)))
    return found


def question_corrections(
    store: PassageStore, question: str, *, is_word: Callable[[str], bool] | None = None
) -> list[Correction]:
    """``corrections`` of the question against the store's vocabulary, but for words spelled well enough.

    A word whose stem occurs in the corpus ("promise" for "promised"), that
    BM25 ignores (a stop word, "going"), or, in lower case, that ``is_word``
    knows as a word of the language ("whole", which the corpus lacks but
    "while" is one edit from) is left as written.
    """
    vocabulary = ready_vocabulary(store)
    if vocabulary is None:
        return []
    found = []
    for correction in corrections(question, vocabulary):
        written = question[correction.start : correction.end]
        tokens = tokenize([written])[0]
        if not tokens or store.known_terms(tokens) == frozenset(tokens):
            continue
        if is_word is not None and written[:1].islower() and is_word(written):
            continue
        found.append(correction)
    return found


_WORD_PIECES: weakref.WeakKeyDictionary[object, Callable[[str], int] | None] = weakref.WeakKeyDictionary()
_WORD_PIECES_LOCK = threading.Lock()


def dictionary(encoder: object) -> Callable[[str], bool] | None:
    """Whether a word is a word of the language, by the encoder's tokenizer: one word piece ("whole").

    The 30,000 word pieces of a BERT-style tokenizer hold the common words
    whole, while a typo ("retrun") splits into pieces. None when the encoder
    has no tokenizer on disk (``token_counter``); read once per encoder.
    """
    with _WORD_PIECES_LOCK:
        if encoder not in _WORD_PIECES:
            make = getattr(encoder, "token_counter", None)
            _WORD_PIECES[encoder] = make() if callable(make) else None
        counter = _WORD_PIECES[encoder]
    if counter is None:
        return None
    counted = counter
    return lambda word: counted(word.lower()) == 1


def suggested_question(question: str, found: list[Correction]) -> str:
    """The question with each correction's corpus spelling in place of the word."""
    for correction in sorted(found, key=lambda c: c.start, reverse=True):
        question = question[: correction.start] + correction.corpus_spelling + question[correction.end :]
    return question


def _skeleton(word: str) -> str:
    """The hyphens and spaces of a word: "Ji-hyun" and "Jihyun" differ in them, "Kim's" and "Kim" do not."""
    return re.sub(r"[^\W_]|['’]", "", re.sub(r"['’]s$", "", word))


def _cased_like(spelling: str, written: str) -> str:
    """The corpus spelling, lower-cased for a lower-case word, keeping the question's possessive."""
    spelling = re.sub(r"['’]s$", "", spelling)
    if written[:1].islower() and spelling[:1].isupper():
        spelling = spelling.lower()
    possessive = re.search(r"['’]s$", written)
    return spelling + possessive.group() if possessive else spelling


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        if len(differ) == 1:
            return True
        i, j = differ[0], differ[-1]
        return len(differ) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(shorter) and shorter[i] == longer[i]:
        i += 1
    return shorter[i:] == longer[i + 1 :]
