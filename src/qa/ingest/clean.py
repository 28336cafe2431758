"""Turn scraped page text into an article: paragraphs plus the metadata the text states.

Scraped text mixes the article with site furniture: menus, share buttons,
image file names, related headlines, comment forms, contact and copyright
lines. The cleaner works like jusText (Pomikalek, 2011): every line is a
block; blocks that match a general boilerplate shape, or repeat, are bad;
long sentence-like blocks are good; short blocks take the class of their
neighbours, so a subheading between two paragraphs stays and a lone word in
a menu goes. No rule names a site, outlet or article.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from qa.ingest.words import count_words, ends_sentence


class Kind(Enum):
    """What a block of scraped text is: article text, boilerplate, metadata or not yet decided."""

    GOOD = "good"
    NEAR_GOOD = "near_good"
    SHORT = "short"
    BAD = "bad"
    META = "meta"


@dataclass(frozen=True)
class CleanedText:
    """The article body and the metadata found in the text ("" when not stated)."""

    paragraphs: tuple[str, ...]
    title: str = ""
    author: str = ""
    date: str = ""
    outlet: str = ""


@dataclass
class _Metadata:
    fields: dict[str, str] = field(default_factory=dict)

    def offer(self, name: str, value: str) -> None:
        """Keep the first value found for a field: earlier rules are the stronger ones."""
        if value and name not in self.fields:
            self.fields[name] = value


# A good block reads like prose: enough words and a sentence ending, or many words. Words
# are counted in any script (qa.ingest.words), so Chinese or Thai text is not "one word".
GOOD_MIN_WORDS = 10
# A block this long is prose even without final punctuation (jusText judges by length
# too): a one-line article, a paragraph cut off, a script that ends sentences with a space.
# A block of GOOD_MIN_WORDS or more without a sentence end is near-good: kept unless
# both its neighbours are boilerplate.
LONG_BLOCK_WORDS = 30
# Above this share of capitalised words, a long line without punctuation is a list (a
# menu flattened onto one line) or a headline in title case, not prose.
LIST_CAPITALS_SHARE = 0.6
CAPITALS_SAMPLE_WORDS = 200
# Boilerplate shapes only apply to short lines, so prose that happens to
# mention an e-mail address or a copyright is kept. The character bound keeps
# a huge line with few spaces (a pasted blob) away from the shape patterns,
# some of which backtrack over the whole line.
SHORT_LINE_WORDS = 30
SHORT_LINE_CHARS = 1_000
TITLE_MIN_WORDS, TITLE_MAX_WORDS = 3, 25
# How far above the first paragraph the headline may sit (menus, share bars
# and bylines come between them on many sites).
TITLE_SEARCH_BLOCKS = 30

_WORD = re.compile(r"\S+")
_IMAGE_FILE = re.compile(r"\S+\.(?:png|jpe?g|gif|svg|webp|bmp|ico)\b", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_LABEL = re.compile(r"\b(?:tel|phone|fax)\b\.?\s*:", re.I)
_COPYRIGHT = re.compile(r"©|\bcopyright\b|\ball rights reserved\b", re.I)
_BULLET = re.compile(r"^[•·▪●◦‣∙*+>–-]\s*")
_LABEL_VALUE = re.compile(r"^[^:]{2,40}\s:\s*\S")
_SOCIAL = re.compile(
    r"^(?:share|tweet|email|e-mail|print|pin|follow|like|facebook|twitter|x|whatsapp|"
    r"kakao\w*|line|reddit|mailto|link|copy link|linkedin|telegram|pinterest|"
    r"instagram|youtube|tiktok)\b",
    re.I,
)
_UI_WORDS = re.compile(
    r"^(?:log ?in|log ?out|sign ?in|sign ?up|register|subscribe|search|menu|all menu|"
    r"close|open|home|more|next|previous|back to top|skip to (?:main )?content|"
    r"(?:view|go to) (?:the )?(?:full|desktop|mobile) (?:site|version)|print preview|"
    r"font size (?:up|down)|advertisement|sponsored)$",
    re.I,
)
_READ_IN_LANGUAGE = re.compile(r"^(?:read|view|see)(?: (?:this|it|the (?:article|story)))? in [A-Z][a-z]+$")
# Bounded gap: an unbounded ".*" rescans the rest of a long paragraph at every "comment" in it.
_COMMENT_FORM = re.compile(
    r"\bcomments?\b.{0,300}?\b(?:form below|moderator|moderated|terms of use|be respectful)\b", re.I
)
_DATE_WITH_PIPE = re.compile(r"^(?:\w{3},? )?[\w ,.-]*\d{4}[\w ,.:-]*\|")
_NUMBER_ONLY = re.compile(r"^[\d\s.,:/|-]+$")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_ISO_DATE = re.compile(r"\b(\d{4})[-./](\d{1,2})[-./](\d{1,2})\b")
_MONTH_DAY_YEAR = re.compile(r"\b([A-Za-z]{3,9})\.? (\d{1,2}),? (\d{4})\b")
_DAY_MONTH_YEAR = re.compile(r"\b(\d{1,2}) ([A-Za-z]{3,9})\.? (\d{4})\b")
_DATE_LABEL = re.compile(r"^(?:posted|published|first published|date|updated|last updated)\s*(?:on)?\s*:?\s*", re.I)
_NAME = r"[A-Z][\w.'’-]*(?:\s+(?:[A-Z][\w.'’-]*|de|van|von|bin|al))*"
_BYLINE = re.compile(rf"^(?i:by)\s+(?P<name>{_NAME}(?:\s+and\s+{_NAME})?)\s*(?:[,|].*)?$")
_CREDIT = re.compile(
    rf"^(?i:reported|written|translated|edited|produced)(?: in \w+)? by (?P<name>{_NAME})"
    r"(?: for (?P<outlet>[^.]+?)(?:['’]s\b[^.]*)?)?\.",
)
_MASTHEAD = re.compile(r"^masthead\s*:\s*(?P<outlet>.+)$", re.I)
# Outlet words are bounded in length so a huge token is not rescanned at each of its dots.
_HAS_LEARNED = re.compile(
    r"(?:^|[^\w\s]\s*|\.\s+)(?P<outlet>(?:[A-Z][\w&.-]{0,40}\s){0,3}[A-Z][\w&.-]{0,40}) has learned\b"
)


def clean_text(raw: str) -> CleanedText:
    """Return the article in ``raw`` scraped text: body paragraphs, title, author, date, outlet."""
    blocks = split_blocks(raw)
    metadata = _Metadata()
    counts = Counter(blocks)
    kinds = [classify_block(block, counts, metadata) for block in blocks]
    title_at = find_title(blocks, kinds)
    if title_at is not None:
        metadata.offer("title", blocks[title_at])
        kinds[title_at] = Kind.META
    kinds = resolve_short_blocks(kinds)
    body = _drop_repeated_paragraphs([b for b, k in zip(blocks, kinds, strict=True) if k is Kind.GOOD])
    for paragraph in body:
        _offer_outlet_from_prose(paragraph, metadata)
    return CleanedText(paragraphs=tuple(body), **metadata.fields)


def split_blocks(raw: str) -> list[str]:
    """Split text into stripped non-empty lines, rejoining prose that was hard-wrapped."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\u00a0\u2007\u202f\t]", " ", text).replace("\u200b", "").replace("\ufeff", "")
    # Each block is gathered as its lines and joined once, so a huge hard-wrapped
    # paragraph is not copied again for every line added to it.
    blocks: list[list[str]] = []
    length = 0  # of the last block, joined
    previous_blank = True
    for line in (line.strip() for line in text.split("\n")):
        if not line:
            previous_blank = True
            continue
        if blocks and not previous_blank and _is_wrapped_continuation(length, blocks[-1][-1], line):
            blocks[-1].append(line)
            length += 1 + len(line)
        else:
            blocks.append([line])
            length = len(line)
        previous_blank = False
    return [" ".join(lines) for lines in blocks]


def _is_wrapped_continuation(length: int, previous_line: str, line: str) -> bool:
    # A line that starts in lower case right after an unfinished long block is
    # the same paragraph wrapped at a fixed width, not a new block.
    return length >= 40 and not ends_sentence(previous_line) and line[0].islower()


def classify_block(block: str, counts: Counter[str], metadata: _Metadata) -> Kind:
    """Classify one block (``counts``: how often each block occurs on the page), recording any metadata it states."""
    if _read_metadata_line(block, metadata):
        return Kind.META
    if is_boilerplate(block) or _is_repeated_short_line(block, counts):
        return Kind.BAD
    words = count_words(block)
    if words < GOOD_MIN_WORDS:
        return Kind.SHORT
    if ends_sentence(block) or (words >= LONG_BLOCK_WORDS and not _mostly_capitalised(block)):
        return Kind.GOOD
    return Kind.NEAR_GOOD


def _mostly_capitalised(block: str) -> bool:
    # Prose in a cased script is mostly lower case; a flattened menu, or a headline, is capitalised words.
    # The first words tell: a 50 MB line is not split whole for it.
    words = (match.group() for match in itertools.islice(_WORD.finditer(block), CAPITALS_SAMPLE_WORDS))
    initials = [word[0] for word in words if word[0].isupper() or word[0].islower()]
    return len(initials) >= GOOD_MIN_WORDS and sum(c.isupper() for c in initials) > LIST_CAPITALS_SHARE * len(initials)


def is_boilerplate(block: str) -> bool:
    """Whether a line has the shape of site furniture rather than article text."""
    words = count_words(block)
    if words > SHORT_LINE_WORDS or len(block) > SHORT_LINE_CHARS:
        return bool(_COMMENT_FORM.search(block))
    plain = _BULLET.sub("", block)
    checks = (
        _starts_with_image_file(plain),
        bool(_EMAIL.search(block) or _PHONE_LABEL.search(block)),
        bool(_COPYRIGHT.search(block)),
        bool(_COMMENT_FORM.search(block)),
        words <= 6 and bool(_SOCIAL.match(plain) or _UI_WORDS.match(plain)),
        bool(_READ_IN_LANGUAGE.match(plain)),
        bool(_NUMBER_ONLY.match(block) or _DATE_WITH_PIPE.match(block)),
        bool(_LABEL_VALUE.match(block)) and words <= 12,
        plain != block and not ends_sentence(block),
        is_self_repeating(block),
    )
    return any(checks)


def _starts_with_image_file(block: str) -> bool:
    # An image name opening a line is an icon or a caption, never prose.
    match = _IMAGE_FILE.match(block)
    return match is not None


def is_self_repeating(block: str) -> bool:
    """Whether a line is one string written twice, as link widgets render a headline."""
    letters = re.sub(r"[\W_]", "", re.sub(r"^\d+", "", block)).casefold()
    half = len(letters) // 2
    return half >= 4 and len(letters) % 2 == 0 and letters[:half] == letters[half:]


def _is_repeated_short_line(block: str, counts: Counter[str]) -> bool:
    # Menus, share bars and related headlines are printed more than once on a
    # page; article sentences are not. Long repeated paragraphs are handled
    # later by keeping their first copy.
    if count_words(block) >= GOOD_MIN_WORDS and ends_sentence(block):
        return False
    return counts[block] > 1


def _read_metadata_line(block: str, metadata: _Metadata) -> bool:
    """Record a byline, dateline, credit or masthead line; return whether it was one."""
    if len(block) > SHORT_LINE_CHARS or count_words(block) > SHORT_LINE_WORDS:
        return False
    if match := _DATE_LABEL.match(block):
        if (date := parse_date(block[match.end() :])) and not block.lower().startswith(("updated", "last")):
            metadata.offer("date", date)
        return bool(date)
    if match := _BYLINE.match(block):
        metadata.offer("author", match["name"])
        return True
    if match := _CREDIT.match(block):
        metadata.offer("author", match["name"])
        metadata.offer("outlet", (match["outlet"] or "").strip())
        return True
    if match := _MASTHEAD.match(block):
        metadata.offer("outlet", match["outlet"].strip())
        return True
    return bool(metadata.fields.get("author") == block)


def parse_date(text: str) -> str:
    """Return the first date in ``text`` as ``YYYY-MM-DD``, or "" if there is none."""
    if match := _ISO_DATE.search(text):
        year, month, day = (int(group) for group in match.groups())
        return _iso(year, month, day)
    if match := _MONTH_DAY_YEAR.search(text):
        month = _MONTHS.get(match[1].lower(), 0)
        return _iso(int(match[3]), month, int(match[2]))
    if match := _DAY_MONTH_YEAR.search(text):
        month = _MONTHS.get(match[2].lower(), 0)
        return _iso(int(match[3]), month, int(match[1]))
    return ""


def _iso(year: int, month: int, day: int) -> str:
    if not 1800 <= year <= 2200:
        return ""
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:  # no such day: 2021-02-30, 2020-13-40
        return ""


def find_title(blocks: list[str], kinds: list[Kind]) -> int | None:
    """Index of the headline: the nearest headline-shaped line above the first paragraph.

    A short line is preferred. A long headline (ten words or more) is
    near-good, and is taken when no short line above the article looks like a
    headline, if something other than text (a byline, a share bar) parts it
    from the article or it is in title case: else it is the article's opening
    paragraph without a final period, or a line of a hard-wrapped one.
    """
    first_good = next((i for i, kind in enumerate(kinds) if kind is Kind.GOOD), None)
    if first_good is None:
        return None
    above = range(first_good - 1, max(-1, first_good - 1 - TITLE_SEARCH_BLOCKS), -1)
    for i in above:
        if kinds[i] is Kind.SHORT and _looks_like_headline(blocks[i]):
            return i
    for i in above:
        if kinds[i] is Kind.NEAR_GOOD and _looks_like_headline(blocks[i]):
            parted = kinds[i + 1] not in (Kind.GOOD, Kind.NEAR_GOOD)
            return i if parted or _mostly_capitalised(blocks[i]) else None
    return None


def _looks_like_headline(block: str) -> bool:
    words = count_words(block)
    return TITLE_MIN_WORDS <= words <= TITLE_MAX_WORDS and not block.endswith((",", ";", ":", "、", "，", "：", "；"))


def resolve_short_blocks(kinds: list[Kind]) -> list[Kind]:
    """Give each near-good and short block a class from its neighbours (the nearest good or bad blocks).

    A near-good block (long, without a sentence end) is good unless every
    neighbour it has is bad: it is kept beside article text, and when nothing
    else in the text is decided. Then a short block is good only between good
    blocks. Metadata lines count as bad neighbours (they frame the article,
    they are not part of it). At either end of the text the one neighbour decides.
    """
    resolved = list(kinds)
    before, after = _nearest_decided(kinds), _nearest_decided(kinds[::-1])[::-1]
    for i, kind in enumerate(kinds):
        if kind is Kind.NEAR_GOOD:
            sides = [side for side in (before[i], after[i]) if side is not None]
            resolved[i] = Kind.BAD if sides and all(side is Kind.BAD for side in sides) else Kind.GOOD
    before, after = _nearest_decided(resolved), _nearest_decided(resolved[::-1])[::-1]
    for i, kind in enumerate(resolved):
        if kind is Kind.SHORT:
            sides = [side for side in (before[i], after[i]) if side is not None]
            resolved[i] = Kind.GOOD if sides and all(side is Kind.GOOD for side in sides) else Kind.BAD
    return resolved


def _nearest_decided(kinds: list[Kind]) -> list[Kind | None]:
    """For each position, the class (good or bad) of the nearest decided block before it (short and near-good skipped).

    One pass, so a page of a hundred thousand short lines (a list, a dump)
    costs no more than its length.
    """
    nearest: list[Kind | None] = []
    last: Kind | None = None
    for kind in kinds:
        nearest.append(last)
        if kind not in (Kind.SHORT, Kind.NEAR_GOOD):
            last = Kind.GOOD if kind is Kind.GOOD else Kind.BAD
    return nearest


def _drop_repeated_paragraphs(paragraphs: list[str]) -> list[str]:
    # A scraper sometimes captures a paragraph twice; a reader sees it once.
    seen: Counter[str] = Counter()
    kept = []
    for paragraph in paragraphs:
        if not seen[paragraph]:
            kept.append(paragraph)
        seen[paragraph] += 1
    return kept


def _offer_outlet_from_prose(paragraph: str, metadata: _Metadata) -> None:
    # News agencies credit themselves in the text: "..., Daily NK has learned."
    if match := _HAS_LEARNED.search(paragraph):
        metadata.offer("outlet", match["outlet"])
