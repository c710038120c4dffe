"""Failures an operator must see are logged at warning or above: postbacks that fail or give
up, carrier submits that fail (retried or refused)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import structlog

from mmsgate.carriers.base import SubmitResult
from mmsgate.store.db import Database
from tests.conftest import Gateway, MediaServer
from tests.pipeline import test_postbacks
from tests.pipeline.conftest import T0
from tests.pipeline.test_deliver import FakeCarrier, accept, run_deliveries
from tests.pipeline.test_postbacks import Receiver, setup

pytestmark = pytest.mark.anyio
receiver = test_postbacks.receiver  # the postback tests' endpoint on loopback


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_failed_postback_is_a_warning_and_giving_up_an_error(
    db: Database, receiver: Receiver
) -> None:
    """Each failed attempt logs postback.failed at warning with the account and the reason;
    the last one, past the retry window, logs postback.gave_up at error."""
    receiver.statuses.extend([503] * 3)
    worker, clock, _ = await setup(db, receiver.url, b"<postback/>")
    with structlog.testing.capture_logs() as logs:
        await worker.run_once()
        clock.now = T0 + dt.timedelta(hours=25)
        await worker.run_once()
    await worker.deps.http.aclose()
    [failed] = events(logs, "postback.failed")
    assert failed["log_level"] == "warning"
    assert failed["error"] == f"HTTP 503 from {receiver.url}"
    assert isinstance(failed["account_id"], int)
    [gave_up] = events(logs, "postback.gave_up")
    assert gave_up["log_level"] == "error"


@pytest.mark.parametrize(
    ("result", "event", "code"),
    [
        (SubmitResult(False, None, 4006, "Busy", transient=True), "carrier.submit_failed", None),
        (SubmitResult(False, None, 2002, "Address Error"), "mms.state", "E101"),
    ],
)
async def test_carrier_failures_are_warnings(
    gateway: Gateway, media_server: MediaServer, result: SubmitResult, event: str, code: str | None
) -> None:
    """A submit the MMSC answers busy (retried) or refuses (the recipient fails) is logged
    at warning, with the tracking-id."""
    tracking_id = await accept(gateway, media_server)
    with structlog.testing.capture_logs() as logs:
        await run_deliveries(gateway, FakeCarrier(result))
    [entry] = events(logs, event)
    assert entry["log_level"] == "warning"
    assert entry["tracking_id"] == tracking_id
    if code is not None:
        assert entry["code"] == code


async def test_an_accepted_submit_stays_at_info(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """An accepted submit is routine: its state change is logged at info."""
    await accept(gateway, media_server)
    with structlog.testing.capture_logs() as logs:
        await run_deliveries(gateway, FakeCarrier(SubmitResult(True, "m-1", 1000, "Success")))
    [entry] = events(logs, "mms.state")
    assert (entry["log_level"], entry["code"]) == ("info", "N101")
