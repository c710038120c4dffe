"""SMS text: the GSM 03.38 alphabet, septet and UTF-16 counting, UDH, and segmentation."""

from __future__ import annotations

import pytest

from mmsgate.sms_text import (
    Concat,
    decode_gsm7,
    decode_part,
    encode_gsm7,
    encode_part,
    is_gsm7,
    segment,
    septets,
    split_udh,
    udh,
    units,
    utf16_units,
)

LINK = "https://mms.example.com/m/Qm9vbGVhbkxpbmtUb2tlbjEyMw"
EMOJI = "😀"  # U+1F600, a surrogate pair in UTF-16


# --- the alphabet ---------------------------------------------------------------------------


def test_default_alphabet_is_gsm7() -> None:
    """Letters, digits, the accented letters and Greek capitals of the default table are GSM-7."""
    assert is_gsm7("Hello, World! 0123456789 @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r")


def test_extension_characters_are_gsm7() -> None:
    """The extension table's ^ { } \\ [ ~ ] | € and form feed are GSM-7 too."""
    assert is_gsm7("^{}\\[~]|€\f")


@pytest.mark.parametrize("text", ["ç", "á", "`", "“quoted”", EMOJI, "日本", "\t", "\x1b"])
def test_outside_the_alphabet(text: str) -> None:
    """Small ç, á, backquote, curly quotes, emoji, CJK, tab and a bare ESC are not GSM-7."""
    assert not is_gsm7(text)


def test_septets_count_extension_characters_twice() -> None:
    """Each extension character takes two septets (ESC + code), everything else one."""
    assert septets("abc") == 3
    assert septets("€") == 2
    assert septets("^{}\\[~]|€\f") == 20
    assert septets("a[b]") == 6


def test_septets_refuse_non_gsm_text() -> None:
    """Counting septets of a text GSM-7 cannot carry names the offending character."""
    with pytest.raises(ValueError, match="ç"):
        septets("façade")


def test_utf16_units_count_astral_characters_twice() -> None:
    """An emoji is two UTF-16 units (a surrogate pair); BMP characters are one."""
    assert utf16_units("日本") == 2
    assert utf16_units(EMOJI) == 2
    assert utf16_units("a" + EMOJI + "b") == 4
    assert units("a" + EMOJI, "ucs2") == 3
    assert units("a€", "gsm7") == 3


def test_encode_gsm7_is_unpacked_with_escapes() -> None:
    """Encoding gives one septet per byte, ESC 0x1B before the extension code."""
    assert encode_gsm7("@A€{") == bytes([0x00, 0x41, 0x1B, 0x65, 0x1B, 0x28])
    assert encode_gsm7("$¤\n") == bytes([0x02, 0x24, 0x0A])


def test_encode_gsm7_refuses_non_gsm_text() -> None:
    """Encoding a character the alphabet lacks is an error, not a silent '?'."""
    with pytest.raises(ValueError, match="not GSM-7"):
        encode_gsm7("naïve")


def test_gsm7_round_trip_over_the_whole_alphabet() -> None:
    """Every GSM-7 character encodes and decodes back to itself."""
    text = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿axyzäöñüà^{}\\[~]|€\f"
    assert decode_gsm7(encode_gsm7(text)) == text


def test_decode_gsm7_unknown_escape_gives_the_default_character() -> None:
    """ESC before a code the extension table lacks shows the default-table character
    (TS 23.038 §6.2.1.1); a trailing ESC carries nothing."""
    assert decode_gsm7(bytes([0x1B, 0x41, 0x42, 0x1B])) == "AB"


def test_decode_gsm7_refuses_eight_bit_bytes() -> None:
    """A byte above 0x7F cannot be unpacked GSM-7."""
    with pytest.raises(ValueError, match="0x80"):
        decode_gsm7(b"\x80")


def test_encode_part_ucs2_is_utf16be_with_surrogates() -> None:
    """UCS-2 parts are UTF-16BE on the wire, an emoji as its surrogate pair, and decode back."""
    data = encode_part("é" + EMOJI, "ucs2")
    assert data == bytes.fromhex("00e9d83dde00")
    assert decode_part(data, "ucs2") == "é" + EMOJI


# --- UDH ------------------------------------------------------------------------------------


def test_udh_bytes() -> None:
    """The concatenation UDH is 05 00 03 ref total seq."""
    assert udh(0x2A, 3, 2) == bytes.fromhex("0500032a0302")


@pytest.mark.parametrize(("ref", "total", "seq"), [(256, 2, 1), (-1, 2, 1), (1, 2, 3), (1, 0, 0)])
def test_udh_refuses_out_of_range_values(ref: int, total: int, seq: int) -> None:
    """A reference outside 0-255 or a part number outside 1..total is refused."""
    with pytest.raises(ValueError, match="not"):
        udh(ref, total, seq)


def test_split_udh_reads_8_and_16_bit_references() -> None:
    """split_udh reads both concatenation elements and returns the text bytes after them."""
    assert split_udh(udh(7, 3, 1) + b"abc") == (Concat(7, 3, 1), b"abc")
    assert split_udh(bytes.fromhex("06080412340201") + b"x") == (Concat(0x1234, 2, 1), b"x")
    assert split_udh(bytes.fromhex("0424020000") + b"y") == (None, b"y")  # no concat element


def test_split_udh_refuses_a_header_longer_than_the_message() -> None:
    """A UDH length pointing past the end is an error."""
    with pytest.raises(ValueError, match="longer"):
        split_udh(bytes([9, 0, 3]))


# --- segmentation ---------------------------------------------------------------------------


def test_160_septets_is_one_part_and_161_is_two() -> None:
    """Up to 160 septets make one SMS; 161 make two parts, the first of 153."""
    one = segment("a" * 160)
    assert (one.coding, one.count, one.parts) == ("gsm7", 1, ("a" * 160,))
    two = segment("a" * 161)
    assert two.count == 2
    assert [len(p) for p in two.parts] == [153, 8]


def test_70_units_is_one_part_and_71_is_two() -> None:
    """UCS-2: up to 70 units make one SMS; 71 make two parts, the first of 67."""
    one = segment("ж" * 70)
    assert (one.coding, one.count) == ("ucs2", 1)
    two = segment("ж" * 71)
    assert (two.coding, [len(p) for p in two.parts]) == ("ucs2", [67, 4])


def test_euro_signs_count_two_septets_in_the_limits() -> None:
    """80 € are 160 septets, one SMS; 81 € are 162 septets, split at 76 € (152 septets)."""
    assert segment("€" * 80).count == 1
    parts = segment("€" * 81).parts
    assert [septets(p) for p in parts] == [152, 10]


def test_escape_pair_is_never_split() -> None:
    """When the 153rd septet would be the ESC of a €, the € moves whole to the next part."""
    parts = segment("a" * 152 + "€" + "b" * 20).parts
    assert parts[0] == "a" * 152
    assert parts[1].startswith("€")
    assert all(septets(p) <= 153 for p in parts)


def test_every_gsm7_part_fits_153_septets() -> None:
    """Long mixed text: every part fits 153 septets, and all but the last are nearly full."""
    text = ("Price [EUR] {€5} ~ok| " * 40).strip()
    parts = segment(text).parts
    assert all(septets(p) <= 153 for p in parts)
    assert all(septets(p) >= 130 for p in parts[:-1])


def test_emoji_is_never_split() -> None:
    """A surrogate pair never straddles two parts: 66 units + an emoji go 66 | emoji..."""
    text = "ж" * 66 + EMOJI + "ж" * 10
    parts = segment(text).parts
    assert parts[0] == "ж" * 66
    assert parts[1].startswith(EMOJI)
    for part in segment(EMOJI * 50).parts:
        assert utf16_units(part) <= 67
        part.encode("utf-16-be").decode("utf-16-be")  # each part decodes on its own


def test_ucs2_fallback_for_one_character() -> None:
    """A single non-GSM character (an emoji) turns the whole text into UCS-2."""
    seg = segment("Your pictures are ready " + EMOJI)
    assert seg.coding == "ucs2"
    assert seg.count == 1


def test_link_is_kept_whole_and_moved_to_the_next_part() -> None:
    """A keep_whole link that would straddle the part boundary moves whole to the next part."""
    text = "x" * 140 + " " + LINK + " thanks"
    seg = segment(text, keep_whole=[LINK])
    assert seg.count == 2
    assert sum(LINK in part for part in seg.parts) == 1
    assert seg.parts[1].startswith(LINK)
    assert "".join(seg.parts) == text


def test_link_kept_whole_in_ucs2() -> None:
    """The link stays whole in UCS-2 text too, where parts hold only 67 units."""
    text = "Фото и видео по ссылке, действует год: " + "ж" * 20 + " " + LINK
    seg = segment(text, keep_whole=[LINK])
    assert seg.coding == "ucs2"
    assert sum(LINK in part for part in seg.parts) == 1
    assert all(utf16_units(p) <= 67 for p in seg.parts)


def test_link_too_long_for_a_part_is_an_error() -> None:
    """A keep_whole string longer than one part can hold raises a clear ValueError."""
    long_link = "https://example.com/" + "a" * 150
    with pytest.raises(ValueError, match="cannot be kept whole"):
        segment("see " + long_link + " " + "b" * 20, keep_whole=[long_link])


def test_long_link_in_a_single_sms_is_fine() -> None:
    """A keep_whole string over 153 septets is no problem when the whole text fits one SMS."""
    link = "https://example.com/" + "a" * 135
    assert segment(link, keep_whole=[link]).parts == (link,)


def test_breaks_at_whitespace_when_cheap() -> None:
    """Words are not cut when a break at a space costs no extra part."""
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit " * 6
    seg = segment(words)
    assert seg.count == 3
    for part in seg.parts[:-1]:
        assert part.endswith(" ")


def test_whitespace_preference_never_costs_a_part() -> None:
    """When breaking at spaces would need one part more, hard breaks are used instead."""
    text = ("a" * 150 + " ") * 2 + "a" * 4  # 306 septets: 2 parts only with hard breaks
    assert segment(text).count == 2
    assert "".join(segment(text).parts) == text


def test_flag_and_zwj_sequences_stay_together_when_possible() -> None:
    """A break is not placed inside a flag (two regional indicators) or a ZWJ sequence."""
    flag = "🇫🇷"
    family = "👨\u200d👩\u200d👧"
    for cluster in (flag, family):
        for pad in range(60, 68):
            parts = segment("ж" * pad + cluster + "ж" * 30).parts
            assert sum(cluster in part for part in parts) == 1, (cluster, pad)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "€" * 300,
        "a" * 1000,
        EMOJI * 100,
        ("word " * 100) + LINK,
        "ж" * 67 * 3,
        "\r\n" * 200,
    ],
)
def test_parts_join_back_to_the_text(text: str) -> None:
    """Segmentation is lossless: the parts, joined, are the text."""
    seg = segment(text, keep_whole=[LINK])
    assert "".join(seg.parts) == text
    limit = 153 if seg.count > 1 else 160
    if seg.coding == "gsm7":
        assert all(septets(p) <= limit for p in seg.parts)
    else:
        assert all(utf16_units(p) <= (67 if seg.count > 1 else 70) for p in seg.parts)
