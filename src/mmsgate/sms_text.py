"""SMS text: the GSM 03.38 alphabet, UCS-2, and splitting a text into concatenated parts.

Pure vocabulary, no I/O. What SMPP carries (SMPP 3.4 §5.2.19, 3GPP TS 23.038 and 23.040):

- data_coding 0 carries GSM-7 *unpacked*, one septet per byte; the SMSC packs it. The
  extension characters ``^ { } \\ [ ~ ] | €`` and form feed are ESC (0x1B) + a code, so they
  cost two septets, and a part never ends between the two.
- data_coding 8 carries UCS-2 as UTF-16BE. A character outside the BMP (an emoji) is a
  surrogate pair, two units, and a part never ends between the two.
- One SMS holds 160 septets or 70 units; a concatenated part holds 153 septets or 67 units,
  the rest of the 140 octets going to the 6-byte UDH ``05 00 03 ref total seq``.

`segment` works on Python characters (code points), so ESC pairs and surrogate pairs are
indivisible by construction; it only has to count their cost right. Joining the parts always
gives the text back.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import unicodedata
from collections.abc import Iterable
from typing import Literal

Coding = Literal["gsm7", "ucs2"]

# 3GPP TS 23.038 §6.2.1: the default alphabet, by code; 0x1B is the escape to the extension
# table, not a character of its own (the placeholder is never encodable).
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# TS 23.038 §6.2.1.1: the extension table, reached by ESC + code.
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESC = 0x1B
assert len(_BASIC) == 128

_ENCODE: dict[int, str] = {ord(c): chr(code) for code, c in enumerate(_BASIC) if code != ESC}
_ENCODE.update({ord(c): chr(ESC) + chr(code) for c, code in _EXTENSION.items()})
_GSM_CHARS = frozenset(chr(o) for o in _ENCODE)
_EXT_CHARS = frozenset(_EXTENSION)
_DECODE_EXT = {code: c for c, code in _EXTENSION.items()}

SINGLE_LIMIT: dict[Coding, int] = {"gsm7": 160, "ucs2": 70}
PART_LIMIT: dict[Coding, int] = {"gsm7": 153, "ucs2": 67}
DATA_CODING: dict[Coding, int] = {"gsm7": 0, "ucs2": 8}  # SMPP 3.4 §5.2.19

# A break that leaves at most this share of a part unused, to land on whitespace, is cheap.
_SPACE_SLACK = 6


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM 03.38 default or extension table."""
    return _GSM_CHARS.issuperset(text)


def septets(text: str) -> int:
    """How many septets `text` takes in GSM-7: extension characters count two."""
    if not is_gsm7(text):
        raise ValueError(f"not GSM-7: {_first_outside(text)!r}")
    return len(text) + sum(1 for c in text if c in _EXT_CHARS)


def utf16_units(text: str) -> int:
    """How many UCS-2 (UTF-16) units `text` takes: a character beyond the BMP counts two."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def units(text: str, coding: Coding) -> int:
    """The length that the limits of `coding` are counted in: septets or UTF-16 units."""
    return septets(text) if coding == "gsm7" else utf16_units(text)


def encode_gsm7(text: str) -> bytes:
    """GSM-7 unpacked (one septet per byte), ESC before extension characters."""
    if not is_gsm7(text):
        raise ValueError(f"not GSM-7: {_first_outside(text)!r}")
    return text.translate(_ENCODE).encode("latin-1")


def decode_gsm7(data: bytes) -> str:
    """Unpacked GSM-7 back to text. ESC before a code the extension table lacks gives the
    default-table character, as TS 23.038 §6.2.1.1 tells a receiver to display."""
    out: list[str] = []
    escaped = False
    for byte in data:
        if byte > 0x7F:
            raise ValueError(f"not unpacked GSM-7: byte 0x{byte:02X}")
        if escaped:
            out.append(_DECODE_EXT.get(byte) or (" " if byte == ESC else _BASIC[byte]))
            escaped = False
        elif byte == ESC:
            escaped = True
        else:
            out.append(_BASIC[byte])
    return "".join(out)  # a trailing lone ESC carries nothing


def encode_part(text: str, coding: Coding) -> bytes:
    """The bytes of one part as SMPP carries them: GSM-7 unpacked or UTF-16BE."""
    if coding == "gsm7":
        return encode_gsm7(text)
    if coding == "ucs2":
        return text.encode("utf-16-be")
    raise ValueError(f"unknown coding {coding!r}")


def decode_part(data: bytes, coding: Coding) -> str:
    """The text of one part's bytes (after any UDH)."""
    if coding == "gsm7":
        return decode_gsm7(data)
    if coding == "ucs2":
        return data.decode("utf-16-be")
    raise ValueError(f"unknown coding {coding!r}")


# --- concatenation header -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Concat:
    """The concatenation information element of a UDH (3GPP TS 23.040 §9.2.3.24.1/.8)."""

    ref: int
    total: int
    seq: int


def udh(ref: int, total: int, seq: int) -> bytes:
    """The 6-byte UDH of part `seq` of `total`, 8-bit reference: 05 00 03 ref total seq."""
    if not 0 <= ref <= 255:
        raise ValueError(f"concatenation reference {ref} is not 0-255")
    if not 1 <= seq <= total <= 255:
        raise ValueError(f"part {seq} of {total} is not within 1-255")
    return bytes((5, 0, 3, ref, total, seq))


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """Separate a UDH from the text bytes (esm_class UDHI set) and read its concatenation
    element, 8-bit (IEI 0x00) or 16-bit (IEI 0x08) reference; None when it has neither."""
    if not short_message:
        raise ValueError("UDHI set but the message is empty")
    end = 1 + short_message[0]
    if end > len(short_message):
        raise ValueError("UDH longer than the message")
    header, i, concat = short_message[1:end], 0, None
    while i + 2 <= len(header):
        iei, size = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + size]
        if len(value) < size:
            raise ValueError("UDH information element runs past the header")
        if iei == 0x00 and size == 3:
            concat = Concat(value[0], value[1], value[2])
        elif iei == 0x08 and size == 4:
            concat = Concat(value[0] << 8 | value[1], value[2], value[3])
        i += 2 + size
    return concat, short_message[end:]


# --- segmentation ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Segmented:
    """A text ready to submit: its coding and its parts (one part: no UDH)."""

    coding: Coding
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


def segment(text: str, keep_whole: Iterable[str] = ()) -> Segmented:
    """Split `text` into as few SMS parts as it needs, GSM-7 when every character allows it,
    else UCS-2. No part ends inside an ESC pair, a surrogate pair, or any occurrence of a
    `keep_whole` string (the hosted-page link moves whole to the next part); where a break at
    whitespace costs no extra part and little room, it is taken. ValueError when a
    `keep_whole` string alone cannot fit one part."""
    coding: Coding = "gsm7" if is_gsm7(text) else "ucs2"
    costs = [2 if c in _EXT_CHARS else 1 for c in text] if coding == "gsm7" else _unit_costs(text)
    cum = [0]
    for cost in costs:
        cum.append(cum[-1] + cost)
    if cum[-1] <= SINGLE_LIMIT[coding]:
        return Segmented(coding, (text,))
    limit = PART_LIMIT[coding]
    spans = _spans(text, keep_whole)
    for start, end in spans:
        if cum[end] - cum[start] > limit:
            raise ValueError(
                f"{text[start:end]!r} takes {cum[end] - cum[start]} {_unit_name(coding)}, "
                f"more than one part holds ({limit}); it cannot be kept whole"
            )
    hard = _split(text, cum, limit, spans, slack=0)
    soft = _split(text, cum, limit, spans, slack=limit // _SPACE_SLACK)
    breaks = soft if len(soft) <= len(hard) else hard
    bounds = [0, *breaks, len(text)]
    return Segmented(coding, tuple(text[a:b] for a, b in itertools.pairwise(bounds)))


def _unit_costs(text: str) -> list[int]:
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _unit_name(coding: Coding) -> str:
    return "septets" if coding == "gsm7" else "UTF-16 units"


def _spans(text: str, keep_whole: Iterable[str]) -> list[tuple[int, int]]:
    """Every occurrence of every keep_whole string, overlapping ones merged, in order."""
    found: list[tuple[int, int]] = []
    for needle in keep_whole:
        if not needle:
            continue
        at = text.find(needle)
        while at >= 0:
            found.append((at, at + len(needle)))
            at = text.find(needle, at + len(needle))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _split(
    text: str, cum: list[int], limit: int, spans: list[tuple[int, int]], slack: int
) -> list[int]:
    """Break positions, greedily: each part as long as it may be, pulled back to an allowed
    break, and to whitespace when that loses at most `slack` units."""
    breaks: list[int] = []
    start = 0
    while cum[-1] - cum[start] > limit:
        furthest = bisect.bisect_right(cum, cum[start] + limit) - 1
        at = _break(text, cum, start, furthest, spans, slack)
        breaks.append(at)
        start = at
    return breaks


def _break(
    text: str, cum: list[int], start: int, furthest: int, spans: list[tuple[int, int]], slack: int
) -> int:
    allowed = [p for p in range(furthest, start, -1) if not _inside(p, spans)]
    # The spans were checked to fit one part, so a part starting at `start` always has one.
    assert allowed, "no break position: a keep_whole span longer than a part"
    if slack:
        for p in allowed:
            if cum[furthest] - cum[p] > slack:
                break
            if text[p - 1].isspace() and _clean(text, p):
                return p
    return next((p for p in allowed if _clean(text, p)), allowed[0])


def _inside(p: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < p < end for start, end in spans)  # a handful of spans at most


_JOINERS = frozenset("\u200d\ufe0e\ufe0f")


def _clean(text: str, p: int) -> bool:
    """Whether a break before text[p] leaves every displayed character whole: not before a
    combining mark, variation selector, skin-tone modifier or tag, not around a zero-width
    joiner, not inside a flag (a pair of regional indicators) or a CR LF."""
    before, after = text[p - 1], text[p]
    if after in _JOINERS or before == "\u200d" or unicodedata.combining(after):
        return False
    code = ord(after)
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or (before, after) == ("\r", "\n"):
        return False
    if _regional(before) and _regional(after):
        run = 0
        while p - 1 - run >= 0 and _regional(text[p - 1 - run]):
            run += 1
        return run % 2 == 0
    return True


def _regional(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def _first_outside(text: str) -> str:
    return next(c for c in text if c not in _GSM_CHARS)
