"""GET /v1/messages/{tracking-id}: the state and history of a send, for its own account only."""

from __future__ import annotations

import pytest

from mmsgate.store import accounts
from tests.api.helpers import fields, send_saved, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio


async def accepted(gw: Gateway) -> dict[str, str]:
    mms_id = fields((await gw.xml(text_template(gw.api_key))).content)["mms-id"]
    return fields((await gw.xml(send_saved(gw.api_key, mms_id))).content)


async def test_status_shows_queued_send(gateway: Gateway) -> None:
    """An accepted send is visible as queued, with its history, ids and numbers."""
    sent = await accepted(gateway)
    response = await gateway.client.get(
        f"/v1/messages/{sent['tracking-id']}", headers={"x-api-key": gateway.api_key}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tracking-id"] == sent["tracking-id"]
    assert body["mms-id"] == sent["mms-id"]
    assert body["to"] == "17745550100"
    assert body["from"] == "28444"
    assert body["state"] == "queued"
    assert body["sent-as"] is None
    assert body["fallback"] is None
    assert [h["state"] for h in body["history"]] == ["queued"]
    assert body["history"][0]["at"] == body["created-at"]


async def test_status_of_another_accounts_send_is_404(gateway: Gateway) -> None:
    """Another account's tracking-id looks exactly like one that does not exist."""
    sent = await accepted(gateway)
    other = await accounts.create(gateway.services.db, "other", senders=["1"])
    assert other is not None
    theirs = await gateway.client.get(
        f"/v1/messages/{sent['tracking-id']}", headers={"x-api-key": other.api_key}
    )
    missing = await gateway.client.get("/v1/messages/nope", headers={"x-api-key": other.api_key})
    assert theirs.status_code == missing.status_code == 404


async def test_status_without_key_is_401(gateway: Gateway) -> None:
    """Without a valid x-api-key the status API answers 401 with E104."""
    response = await gateway.client.get("/v1/messages/anything")
    assert response.status_code == 401
    assert response.json()["error-code"] == "E104"


async def test_health_and_readiness(gateway: Gateway) -> None:
    """/healthz answers ok; /readyz answers ok while the database is reachable."""
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    assert (await gateway.client.get("/readyz")).status_code == 200


async def test_a_tracking_id_no_send_could_have_is_404(gateway: Gateway) -> None:
    """An id with characters no tracking-id has (a NUL, which PostgreSQL cannot even
    compare) is a 404 E242 like any unknown one, on both databases."""
    for raw in ("a%00b", "x" * 41, "a%20b"):
        response = await gateway.client.get(
            f"/v1/messages/{raw}", headers={"x-api-key": gateway.api_key}
        )
        assert response.status_code == 404, raw
        assert response.json()["error-code"] == "E242"
