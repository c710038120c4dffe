"""How the simulated SMSC spells its message ids, including the ways real SMSCs disagree.

With `msg_id_type` (Kannel's meaning: bit 0 hex in submit_sm_resp, bit 1 hex in the receipt)
it writes the submit_sm_resp id zero-padded (upper-case hex or decimal) and the receipt's id
unpadded (lower-case hex or decimal), as SMSCs do. `text_base` and `tlv_base` make it hostile:
the receipt text's `id:` and the `receipted_message_id` TLV each in a base of their own, as an
SMSC that writes the TLV like its submit_sm_resp and only the text the other way.
"""

from __future__ import annotations

import dataclasses

BASES = (10, 16)


@dataclasses.dataclass(frozen=True, slots=True)
class IdSpelling:
    msg_id_type: int | None = None  # None: one opaque 10-digit spelling everywhere
    text_base: int | None = None  # the receipt text's id; None: as msg_id_type bit 1 says
    tlv_base: int | None = None  # receipted_message_id; None: as the receipt text

    def __post_init__(self) -> None:
        if self.msg_id_type not in (None, 0, 1, 2, 3):
            raise ValueError(f"msg_id_type: expected 0, 1, 2 or 3, not {self.msg_id_type!r}")
        for name in ("text_base", "tlv_base"):
            if getattr(self, name) not in (None, *BASES):
                raise ValueError(f"{name}: expected 10 or 16, not {getattr(self, name)!r}")

    def submit(self, serial: int) -> str:
        """The id in submit_sm_resp."""
        if self.msg_id_type is None:
            return f"{serial:010d}"
        return f"{serial:010X}" if self.msg_id_type & 1 else f"{serial:012d}"

    def text(self, serial: int) -> str:
        """The id after `id:` in the receipt text."""
        return _spell(serial, self._text_base())

    def tlv(self, serial: int) -> str:
        """The id in the receipt's receipted_message_id TLV."""
        return _spell(serial, self.tlv_base or self._text_base())

    def _text_base(self) -> int | None:
        if self.text_base is not None or self.msg_id_type is None:
            return self.text_base
        return 16 if self.msg_id_type & 2 else 10


def _spell(serial: int, base: int | None) -> str:
    if base is None:
        return f"{serial:010d}"
    return f"{serial:x}" if base == 16 else str(serial)
