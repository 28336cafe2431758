"""Decoding corpus files: byte-order marks, UTF-8, declared charsets, detection, binary files."""

from __future__ import annotations

import codecs
import random
import unicodedata

import pytest

from qa.ingest.decode import DecodedText, UndecodableError, decode_bytes

# A Korean news paragraph, as North Korea-watching outlets publish it in EUC-KR.
KOREAN = (
    "통일부는 올해 들어 북한으로 다시 돌아간 탈북민이 지난해보다 늘었다고 밝혔다. "
    "전문가들은 남한 사회에 적응하지 못하거나 북에 남은 가족이 걱정되어 돌아가는 경우가 많다고 말했다. "
    "북한 당국은 재입북한 탈북민을 선전 매체에 내세워 남한 생활의 어려움을 강조하고 있다."
)
# CP949 (Windows' Korean) adds syllables EUC-KR cannot encode, such as "똠" and "햏".
KOREAN_CP949_ONLY = KOREAN + " 한 주민은 “똠방각하”라는 말을 듣고 웃었다고 전했다."
FRENCH = (
    "Les réfugiés nord-coréens qui retournent au Nord expliquent souvent leur décision par la famille "
    "restée là-bas. « C'est très difficile », a déclaré un fonctionnaire du ministère de l'Unification "
    "à Séoul. Selon lui, près de trente personnes sont reparties depuis 2012, et le gouvernement n'a pas "
    "été informé de leur départ. Les experts estiment que la pression exercée sur les familles est "
    "considérable : les autorités promettent une amnistie et des cadeaux à ceux qui reviennent."
)
GERMAN = (
    "Die Flüchtlinge aus Nordkorea kehren oft zurück, weil ihre Familien bedroht werden. Nach Angaben "
    "des Ministeriums sind seit 2012 fast dreißig Menschen zurückgegangen; die Regierung wusste nichts "
    "davon. Experten schätzen den Druck auf die Familien als groß ein: Die Behörden versprechen "
    "Straffreiheit und Geschenke für jene, die heimkehren, und drohen den Übrigen."
)
# Curly quotes, dashes and the ellipsis are CP1252's; Latin-1 has control codes there.
ENGLISH_CP1252 = "He said the “border” was closed – and nobody knew why… It’s a long story — the aide said."
SHORT_FRENCH = "Les réfugiés « C'est très difficile », a déclaré un fonctionnaire à Séoul."


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(KOREAN, "euc_kr"), (KOREAN, "cp949"), (KOREAN_CP949_ONLY, "cp949")],
)
def test_korean_in_euc_kr_and_cp949_decodes_to_the_original(text: str, encoding: str) -> None:
    decoded = decode_bytes(text.encode(encoding))
    assert decoded.text == text
    assert decoded.encoding == "cp949"  # EUC-KR is read as its superset, CP949
    assert not decoded.is_utf8


@pytest.mark.parametrize("text", [FRENCH, GERMAN])
@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_western_text_in_cp1252_or_latin1_decodes_to_the_original(text: str, encoding: str) -> None:
    decoded = decode_bytes(text.encode(encoding))
    assert (decoded.text, decoded.encoding) == (text, "cp1252")


def test_cp1252_punctuation_is_not_read_as_latin1_control_codes() -> None:
    decoded = decode_bytes(ENGLISH_CP1252.encode("cp1252"))
    assert (decoded.text, decoded.encoding) == (ENGLISH_CP1252, "cp1252")


def test_utf8_is_tried_first_and_reported_as_utf8() -> None:
    decoded = decode_bytes(KOREAN.encode("utf-8"))
    assert (decoded.text, decoded.encoding, decoded.is_utf8) == (KOREAN, "utf-8", True)


@pytest.mark.parametrize(
    ("bom", "encoding", "reported"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    ],
)
def test_byte_order_marks_decide_and_are_dropped(bom: bytes, encoding: str, reported: str) -> None:
    decoded = decode_bytes(bom + KOREAN.encode(encoding))
    assert (decoded.text, decoded.encoding) == (KOREAN, reported)


def test_a_page_declaring_its_charset_is_read_in_it() -> None:
    # Short Western text alone is ambiguous to the detector (it guesses ISO-8859-2);
    # the page's own declaration is not.
    page = f'<html><head><meta charset="iso-8859-1"></head><body><p>{SHORT_FRENCH}</p></body></html>'
    decoded = decode_bytes(page.encode("latin-1"), html=True)
    assert SHORT_FRENCH in decoded.text
    assert decoded.encoding == "cp1252"  # browsers read "Latin-1" as its superset CP1252


@pytest.mark.parametrize(
    "head",
    [
        '<?xml version="1.0" encoding="windows-1252"?>\n<html>',
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
    ],
)
def test_xml_declaration_and_http_equiv_meta_declare_charsets_too(head: str) -> None:
    page = f"{head}<body><p>{SHORT_FRENCH}</p></body></html>"
    assert SHORT_FRENCH in decode_bytes(page.encode("cp1252"), html=True).text


def test_euc_kr_declaration_reads_cp949_syllables() -> None:
    page = f'<html><head><meta charset="euc-kr"></head><body><p>{KOREAN_CP949_ONLY}</p></body></html>'
    decoded = decode_bytes(page.encode("cp949"), html=True)
    assert KOREAN_CP949_ONLY in decoded.text and decoded.encoding == "cp949"


def test_valid_utf8_wins_over_a_wrong_declaration() -> None:
    # A template that still says Latin-1 around UTF-8 text: reading it as
    # declared would turn "é" into "Ã©".
    page = f'<html><head><meta charset="iso-8859-1"></head><body><p>{FRENCH}</p></body></html>'
    decoded = decode_bytes(page.encode("utf-8"), html=True)
    assert FRENCH in decoded.text and decoded.encoding == "utf-8"


def test_declarations_count_only_in_html() -> None:
    text = f'<meta charset="iso-8859-2"> {KOREAN}'
    assert decode_bytes(text.encode("cp949"), html=True).encoding == "iso8859-2"  # as the page says
    assert decode_bytes(text.encode("cp949")) == DecodedText(text, "cp949")  # as the bytes are


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n"])
def test_empty_files_are_refused(data: bytes) -> None:
    with pytest.raises(UndecodableError, match="empty"):
        decode_bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + random.Random(0).randbytes(4096),
        b"%PDF-1.4\n" + b"\x00\x01\x02\x03stream\x00\x00" * 200,
        bytes(range(256)) * 16,
        "text padded with NUL bytes, as UTF-16 without a byte-order mark is".encode("utf-16-le"),
    ],
)
def test_binary_files_are_refused(data: bytes) -> None:
    with pytest.raises(UndecodableError, match="binary"):
        decode_bytes(data)


def test_stray_control_characters_are_dropped_from_text() -> None:
    text = "The minister spoke \x00at length about the border, and the reporters listened to all of it. " * 5
    decoded = decode_bytes(text.encode("utf-8"))
    assert decoded.text == text.replace("\x00", "")


def test_text_is_composed_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", KOREAN + " café")
    assert decomposed != KOREAN + " café"
    assert decode_bytes(decomposed.encode("utf-8")).text == KOREAN + " café"


def test_undecodable_bytes_are_refused_with_a_reason() -> None:
    # A UTF-16 byte-order mark followed by an odd number of bytes is no UTF-16 at all.
    with pytest.raises(UndecodableError, match="utf-16"):
        decode_bytes(codecs.BOM_UTF16_LE + b"\x81" * 7)


# --- escape-based encodings: 7-bit bytes that are valid ASCII, so valid UTF-8 ------------------

JAPANESE = (
    "北朝鮮の金正恩総書記は、韓国に逃れた脱北者に帰国を呼びかけた。"
    "関係者によると、家族を通じて電話で説得する例が増えているという。"
)
# Half-width katakana need the "ext" variant; Korean in Japanese text, ISO-2022-JP-2.
JAPANESE_HALF_WIDTH = JAPANESE + "ｶﾀｶﾅ"


@pytest.mark.parametrize(
    ("text", "encoding", "reported"),
    [
        (JAPANESE, "iso2022_jp", "iso2022_jp"),
        (JAPANESE + " Reuters", "iso2022_jp_2", "iso2022_jp"),
        (JAPANESE + KOREAN, "iso2022_jp_2", "iso2022_jp_2"),
        (JAPANESE_HALF_WIDTH, "iso2022_jp_ext", "iso2022_jp_ext"),
        (KOREAN, "iso2022_kr", "iso2022_kr"),
    ],
    ids=["jp", "jp-2 holding jp only", "jp-2", "jp-ext", "kr"],
)
def test_iso_2022_is_recognised_not_read_as_utf8(text: str, encoding: str, reported: str) -> None:
    data = text.encode(encoding)
    assert data.isascii()  # valid UTF-8: the bytes alone are garbage text
    decoded = decode_bytes(data)
    assert (decoded.text, decoded.encoding) == (text, reported)


def test_iso_2022_cn_which_python_cannot_decode_is_refused_naming_it() -> None:
    # ESC $ ) A designates GB 2312; SO and SI shift it in and out.
    data = b"\x1b$)A\x0e" + "北朝鲜".encode("gb2312").translate(bytes(b & 0x7F for b in range(256))) + b"\x0f\n"
    with pytest.raises(UndecodableError, match="ISO-2022-CN, which qa cannot read: save it as UTF-8"):
        decode_bytes(data)


def test_broken_iso_2022_jp_is_refused_not_read_as_garbage() -> None:
    data = JAPANESE.encode("iso2022_jp")[:-7] + b"\x1b$(Z\x7f"
    with pytest.raises(UndecodableError, match="escape sequences of ISO-2022-JP but is not valid ISO-2022-JP"):
        decode_bytes(data)


def test_terminal_escapes_in_utf8_text_are_not_taken_for_iso_2022() -> None:
    text = f"\x1b[1mBold\x1b(B\x1b[m {FRENCH}"
    decoded = decode_bytes(text.encode("utf-8"))
    assert decoded.encoding == "utf-8" and FRENCH in decoded.text


def test_utf7_with_its_byte_order_mark_is_read_as_utf7() -> None:
    decoded = decode_bytes("\ufeff".encode("utf-7") + KOREAN.encode("utf-7"))
    assert (decoded.text, decoded.encoding) == (KOREAN, "utf-7")
