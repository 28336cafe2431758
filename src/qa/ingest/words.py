"""Words and sentence ends in any script, for the rules that judge whether text reads like prose.

Counting words by spaces makes a Chinese or Japanese paragraph one "word" and
a Thai one a handful, so article text in those scripts looked too short to be
kept. Here a run of characters of a script written without spaces counts as
the number of words such text holds on average, and sentence-final
punctuation is that of every script, not only ``. ! ?``.
"""

from __future__ import annotations

import re

# Scripts written without spaces between words: Han ideographs, kana (full and half width).
_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
# Thai, Lao, Tibetan, Myanmar, Khmer, New Tai Lue, Tai Tham: spaces part phrases, not words.
_SOUTHEAST_ASIAN = re.compile("[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u1980-\u19df\u1a20-\u1aaf]")
# Wide punctuation of those scripts ("、", "。", "「", "！"): it separates, it is not a word.
_WIDE_PUNCTUATION = re.compile("[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
# Average word lengths in characters: about 1.5 to 2 for Chinese and Japanese, 4 to 5
# for Thai and its neighbours. Rounded down, so a paragraph is not judged too short.
CJK_CHARACTERS_PER_WORD = 2
SOUTHEAST_ASIAN_CHARACTERS_PER_WORD = 4

# Sentence-final punctuation of the world's scripts (Unicode's Sentence_Terminal, the common
# ones): Latin, CJK (full and half width), Devanagari and Bengali dandas, Arabic and Urdu,
# Armenian, Ethiopic, Myanmar, Khmer, Tibetan, Syriac, NKo, Mongolian, vertical forms.
SENTENCE_STOPS = ".!?…‼⁇⁈⁉‽。！？｡．।॥؟؞۔։።፧፨။៕།༎܀߹᠃᠉︒﹒﹖﹗"
# What may follow the stop: closing quotes and brackets of any script.
SENTENCE_CLOSERS = "\"'”’)]»›」』）】〉》〕〗〙〛］｣"


def count_words(text: str) -> int:
    """How many words ``text`` holds, in any script.

    Text in scripts that put spaces between words counts its space-separated
    tokens (exactly ``len(text.split())``); characters of Chinese, Japanese,
    Thai and their neighbours count as their average share of a word.
    """
    if text.isascii():
        return len(text.split())  # the common case, and the same count as always
    cjk = len(_CJK.findall(text))
    southeast_asian = len(_SOUTHEAST_ASIAN.findall(text))
    if not (cjk or southeast_asian):
        return len(text.split())
    # What is left between those characters ("2020", "iPhone") counts a word a token.
    rest = _SOUTHEAST_ASIAN.sub(" ", _CJK.sub(" ", _WIDE_PUNCTUATION.sub(" ", text)))
    return (
        len(rest.split())
        + -(-cjk // CJK_CHARACTERS_PER_WORD)
        + -(-southeast_asian // SOUTHEAST_ASIAN_CHARACTERS_PER_WORD)
    )


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with sentence-final punctuation of any script (closing quotes allowed)."""
    body = text.rstrip(SENTENCE_CLOSERS)  # the end alone is looked at: a 50 MB line costs no more
    return bool(body) and body[-1] in SENTENCE_STOPS
