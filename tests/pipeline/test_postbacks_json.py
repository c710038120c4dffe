"""JSON postbacks: sent to accounts whose format is JSON, signed as the XML ones are; a
change of format takes effect as a change of URL does; jobs of earlier versions unchanged."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from mmsgate import models
from mmsgate.pipeline import postback_sender
from mmsgate.store import accounts
from mmsgate.store.db import Database
from tests.pipeline.test_postbacks import Receiver, job_row, receiver, setup
from tests.pipeline.test_postbacks import n003 as plain_n003

pytestmark = pytest.mark.anyio
__all__ = ["receiver"]  # the fixture, for these tests
JSON = models.PostbackFormat.JSON


def verified(secret: str, headers: dict[str, str], raw: bytes) -> bool:
    """What a customer's receiver does: HMAC-SHA256 of `timestamp.` + the raw bytes."""
    message = headers["x-mmsgate-timestamp"].encode() + b"." + raw
    expected = "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-mmsgate-signature"])


def n101(account_id: int) -> models.PostbackEvent:
    return models.PostbackEvent(
        models.PostbackKind.DELIVERY, account_id, "N101", tracking_id="t-1", mms_id=7,
        sender="28444", to="17745550100", sent_as="MMS", details="accepted by sim",
        client_reference="order-42",
    )  # fmt: skip


async def test_a_json_account_gets_json_signed_over_the_bytes_it_receives(
    db: Database, receiver: Receiver
) -> None:
    """An account with the JSON format gets the event as `application/json`, with the
    client-reference, and its signature verifies over the raw bytes received."""
    worker, _clock, secret = await setup(db, receiver.url, n101)
    assert await accounts.update(db, "acme", postback_format=JSON.value) is not None
    assert await worker.run_once() == 1
    [(headers, raw)] = receiver.received
    assert headers["content-type"] == "application/json"
    assert json.loads(raw) == {
        "origin": "MMS_MT",
        "code": "N101",
        "sent-as": "MMS",
        "status": "Sent",
        "status-details": "accepted by sim",
        "mms-id": "7",
        "from": "28444",
        "to": "17745550100",
        "tracking-id": "t-1",
        "client-reference": "order-42",
    }
    assert verified(secret, headers, raw)
    assert not verified(secret, headers, raw.replace(b"N101", b"N102"))
    assert (await job_row(db)).state == "done"
    await worker.deps.http.aclose()


async def test_an_earlier_versions_rendered_body_is_sent_as_stored_to_a_json_account(
    db: Database, receiver: Receiver
) -> None:
    """A job holding an XML body rendered by an earlier version goes as it is, with its
    own Content-Type, even to an account now on JSON."""
    body = b"<postback>\n    <code>N102</code>\n</postback>\n"
    worker, _clock, secret = await setup(db, receiver.url, body)
    assert await accounts.update(db, "acme", postback_format=JSON.value) is not None
    assert await worker.run_once() == 1
    [(headers, raw)] = receiver.received
    assert (raw, headers["content-type"]) == (body, "application/xml")
    assert verified(secret, headers, raw)
    await worker.deps.http.aclose()


async def test_a_format_change_takes_effect_once_the_target_is_read_again(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker keeps an account's target for TARGET_TTL, as it keeps its URL: a switch
    to JSON applies to the postbacks sent after that, and the switch back to XML too."""
    now = [1000.0]
    monkeypatch.setattr(postback_sender.time, "monotonic", lambda: now[0])
    worker, _clock, _secret = await setup(db, receiver.url, plain_n003)
    found = await accounts.by_name(db, "acme")
    assert found is not None
    account_id = found.id
    sender = worker.deps.http
    first = await sender.target(db, account_id)
    assert first is not None
    assert first.format is models.PostbackFormat.XML
    await accounts.update(db, "acme", postback_format=JSON.value)
    assert await sender.target(db, account_id) == first  # within the TTL: as it was
    now[0] += postback_sender.TARGET_TTL + 0.5
    again = await sender.target(db, account_id)
    assert again == models.PostbackTarget(receiver.url, first.secret, JSON)
    assert await worker.run_once() == 1
    [(headers, raw)] = receiver.received
    assert headers["content-type"] == "application/json"
    assert json.loads(raw) == {"origin": "MMS_MT", "code": "N003", "mms-id": "7"}
    await accounts.update(db, "acme", postback_format="xml")
    now[0] += postback_sender.TARGET_TTL + 0.5
    back = await sender.target(db, account_id)
    assert back is not None
    assert back.format is models.PostbackFormat.XML
    await worker.deps.http.aclose()


async def test_accounts_are_created_with_xml_postbacks_unless_told(db: Database) -> None:
    """A new account posts XML; one created with the JSON format posts JSON, and its
    target says so."""
    plain = await accounts.create(db, "plain", senders=["1"])
    chosen = await accounts.create(db, "chosen", senders=["2"], postback_format=JSON)
    assert plain is not None
    assert chosen is not None
    assert plain.account.postback_format is models.PostbackFormat.XML
    assert chosen.account.postback_format is JSON
    target = await accounts.postback_target(db, chosen.account.id)
    assert target == models.PostbackTarget(None, chosen.postback_secret, JSON)
    assert await accounts.postback_target(db, chosen.account.id + 100) is None
