"""The carrier interface: submit an MMS, close. Implementations: MM7 (and the simulator)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from mmsgate.mm7_codec import Submit


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitResult:
    """What the MMSC said: accepted with a MessageID, or refused (permanently or not)."""

    accepted: bool
    message_id: str | None
    status_code: int
    status_text: str
    transient: bool = False


class Carrier(Protocol):
    async def submit(self, submit: Submit) -> SubmitResult: ...

    async def close(self) -> None: ...
