"""Carriers as data: the Sinch operator ids mmsgate knows and what each one is called."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Operator:
    """A mobile operator under its Sinch operator id."""

    id: int
    name: str


# Sinch's X-Mblox-Carrier-Id values (Sinch operator-id list).
OPERATORS: dict[int, Operator] = {
    op.id: op
    for op in (
        Operator(31002, "AT&T"),
        Operator(31003, "Verizon"),
        Operator(31004, "T-Mobile"),
        Operator(31005, "Sprint"),
        Operator(31062, "MetroPCS"),
    )
}
