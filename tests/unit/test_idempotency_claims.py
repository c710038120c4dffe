"""An Idempotency-Key claim as a codec makes it, and an answer kept as data for its replay."""

from __future__ import annotations

import json

import pytest

from mmsgate import codes, errors
from mmsgate.api import idempotency, results, sinch_xml


def test_no_header_is_no_claim() -> None:
    """Without the header there is nothing to claim."""
    assert idempotency.claim([], "xml", b"<request/>") is None


def test_the_fingerprint_is_the_api_and_the_body_bytes() -> None:
    """One key and body give one fingerprint; another body byte or another API another."""
    one = idempotency.claim(["k"], "xml", b"<request/>")
    assert one == idempotency.claim(["k"], "xml", b"<request/>")
    assert one is not None
    assert len(one.fingerprint) == 64
    others = {
        idempotency.claim(["k"], "xml", b"<request/> "),
        idempotency.claim(["k"], "json", b"<request/>"),
    }
    assert one.fingerprint not in {o.fingerprint for o in others if o is not None}


@pytest.mark.parametrize(
    "values",
    [[""], ["k" * 256], ["é"], ["a\x7f"], ["a\nb"], ["a", "b"]],
    ids=["empty", "too-long", "latin-1", "delete", "newline", "twice"],
)
def test_a_bad_key_is_e100_naming_the_header(values: list[str]) -> None:
    """Empty, over 255, outside printable ASCII, or given twice: E100 about Idempotency-Key."""
    with pytest.raises(errors.ApiError) as refused:
        idempotency.claim(values, "xml", b"x")
    assert refused.value.code is codes.ErrorCode.INVALID_REQUEST
    assert refused.value.info.startswith("Invalid request: Idempotency-Key ")


ANSWERS = [
    results.Saved(7),
    results.Sent(12, (results.Accepted("17745550100", "tRk"),), is_list=False),
    results.Sent(12, (results.Accepted("17745550100", "tRk"),), is_list=False, sender="28444"),
    results.Sent(
        3,
        (
            results.Accepted("17745550100", "a1"),
            results.Refused("nonsense", errors.ApiError(codes.ErrorCode.BAD_TO, "Invalid 'to' x")),
            results.Refused("17745550101", errors.ApiError(codes.ErrorCode.OPERATOR_NOT_SUPPORTED)),
        ),
        is_list=True,
    ),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=["saved", "sent", "sent-saved", "list"])
def test_an_answer_kept_as_data_renders_the_same_bytes(
    answer: results.Sent | results.Saved,
) -> None:
    """to_data survives a JSON round trip and from_data gives back an answer whose XML is
    byte for byte the first one's."""
    data = json.loads(json.dumps(results.to_data(answer)))
    again = results.from_data(data, answer.mms_id)
    assert sinch_xml.answer(again) == sinch_xml.answer(answer)
    assert "mms_id" not in data  # the accept assigns it: a column of its own
