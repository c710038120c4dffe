"""POST /mm7 acts only for the route a request authenticates as: its Basic pair and/or its
source networks; faults mirror the request and say whether a resend can help; MMSC
addresses are read in any of their forms."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mmsgate import mm7_codec as mm7
from mmsgate import models
from mmsgate.pipeline.postbacks import body_of
from mmsgate.settings import Route
from mmsgate.sim.mmsc import delivery_report
from mmsgate.store.schema import jobs, mo_messages, recipients
from tests.api.test_mm7_receiver import postback_codes, queued, take
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio
URL = "http://127.0.0.1:9/mm7"
ROUTES = (
    Route(name="a", kind="mm7", url=URL, inbound_username="a-mmsc", inbound_password="a-pw",
          prefixes=("44",)),
    Route(name="b", kind="mm7", url=URL, inbound_username="b-mmsc", inbound_password="b-pw",
          inbound_ips=("127.0.0.0/8",), default=True),
    Route(name="c", kind="mm7", url=URL, inbound_username="c-mmsc", inbound_password="c-pw",
          inbound_ips=("10.0.0.0/8",), prefixes=("33",)),
)  # fmt: skip
A, B, C = ("a-mmsc", "a-pw"), ("b-mmsc", "b-pw"), ("c-mmsc", "c-pw")
REL5 = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-0"


async def state_of(gateway: Gateway, tracking_id: str) -> str:
    async with gateway.services.db.read() as conn:
        query = sa.select(recipients.c.state).where(recipients.c.tracking_id == tracking_id)
        return str((await conn.execute(query)).scalar_one())


async def mo_count(gateway: Gateway) -> int:
    async with gateway.services.db.read() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(mo_messages))).scalar_one()
        )


def deliver(sender: str = "17745550100", to: str = "28444") -> tuple[str, bytes]:
    return mm7.encode_deliver("mo-1", sender, to, [("text/plain", b"hi")])


@pytest.mark.config(routes=ROUTES)
@pytest.mark.parametrize("auth", [None, ("b-mmsc", "wrong"), ("nobody", "b-pw"), C])
async def test_unauthenticated_requests_are_401_and_change_nothing(
    gateway: Gateway, media_server: MediaServer, auth: tuple[str, str] | None
) -> None:
    """No pair, a wrong password, an unknown user, or the right pair from outside the
    route's networks: 401 with WWW-Authenticate: Basic, and no report or MO is applied."""
    tracking_id = await queued(gateway, media_server)
    await take(gateway, tracking_id, "m-1", route="c")
    for content_type, body in (("text/xml", delivery_report("m-1", "1", "Retrieved")), deliver()):
        answer = await gateway.mm7(body, content_type, auth=auth)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Basic ")
    assert await state_of(gateway, tracking_id) == models.RecipientState.SUBMITTED.value
    assert await postback_codes(gateway) == []
    assert await mo_count(gateway) == 0


@pytest.mark.config(routes=ROUTES)
async def test_a_route_moves_only_messages_submitted_over_it(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Route A's MMSC reporting a message submitted over route B is answered as an unknown
    id and moves nothing; route B's own report moves it."""
    tracking_id = await queued(gateway, media_server)
    await take(gateway, tracking_id, "m-b", route="b")
    body = delivery_report("m-b", "12399471613", "Retrieved")
    as_a = await gateway.mm7(body, auth=A)
    assert mm7.decode_response("text/xml", as_a.content).status_code == 3000
    assert await state_of(gateway, tracking_id) == models.RecipientState.SUBMITTED.value
    as_b = await gateway.mm7(body, auth=B)
    assert mm7.decode_response("text/xml", as_b.content).status_code == 1000
    assert await postback_codes(gateway) == ["N102"]


@pytest.mark.config(routes=ROUTES)
async def test_an_mo_through_a_route_not_serving_the_number_is_refused(gateway: Gateway) -> None:
    """28444 is reached through the default route B: an MO to it from route A's MMSC is a
    final 2002 and stores nothing; the same MO from B is taken."""
    content_type, body = deliver()
    refused = await gateway.mm7(body, content_type, auth=A)
    assert refused.status_code == 400
    assert mm7.decode_response("text/xml", refused.content).status_code == 2002
    assert await mo_count(gateway) == 0
    taken = await gateway.mm7(body, content_type, auth=B)
    assert mm7.decode_response("text/xml", taken.content).status_code == 1000
    assert await mo_count(gateway) == 1


@pytest.mark.parametrize(
    ("sender", "to"),
    [("+17745550100", "+28444"), ("17745550100", "28444"),
     ("tel:+17745550100", "+28444/TYPE=PLMN"), ("+17745550100/TYPE=PLMN", "tel:28444")],
)  # fmt: skip
async def test_mo_numbers_in_any_form_are_posted_as_digits(
    gateway: Gateway, sender: str, to: str
) -> None:
    """A DeliverReq with `+`, bare, `tel:` or `/TYPE=PLMN` numbers reaches the account of
    28444, and its N401 writes from and to as digits."""
    content_type, body = deliver(sender, to)
    answer = await gateway.mm7(body, content_type)
    assert mm7.decode_response("text/xml", answer.content).status_code == 1000
    async with gateway.services.db.read() as conn:
        [payload] = (await conn.scalars(sa.select(jobs.c.payload))).all()
    assert "<from>17745550100</from>" in body_of(payload)[0].decode()
    assert "<to>28444</to>" in body_of(payload)[0].decode()


async def test_faults_mirror_the_request_and_say_if_a_resend_can_help(gateway: Gateway) -> None:
    """A REL-5 request's faults come in REL-5 with its MM7Version; an unsupported operation
    and an address error are final (400, env:Client), an unknown MessageID is retried (500)."""
    report = (
        delivery_report("never", "1", "Retrieved")
        .replace(mm7.DEFAULT_NAMESPACE.encode(), REL5.encode())
        .replace(b"6.8.0", b"5.3.0")
    )
    unknown = await gateway.mm7(report)
    assert unknown.status_code == 500
    cancel = report.replace(b"DeliveryReportReq", b"CancelReq")
    multipart, to_nobody = deliver(to="99999")
    for body, kind, code in ((cancel, "text/xml", 4003), (to_nobody, multipart, 2002)):
        answer = await gateway.mm7(body, kind)
        assert answer.status_code == 400
        assert mm7.decode_response("text/xml", answer.content).status_code == code
        assert b"env:Client" in answer.content
    for answer in (unknown, await gateway.mm7(cancel)):
        assert REL5.encode() in answer.content
        assert b"<MM7Version>5.3.0</MM7Version>" in answer.content


@pytest.mark.config(routes=ROUTES)
async def test_two_mmscs_giving_one_message_id_each_move_their_own(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """Routes A and B's MMSCs both took a message under MessageID m-7: A's report moves
    A's recipient and B's report B's, whichever the lookup meets first."""
    over_a, over_b = await queued(gateway, media_server), await queued(gateway, media_server)
    await take(gateway, over_a, "m-7", route="a")
    await take(gateway, over_b, "m-7", route="b")
    for auth, tracking_id in ((B, over_b), (A, over_a)):
        answer = await gateway.mm7(delivery_report("m-7", "12399471613", "Retrieved"), auth=auth)
        assert mm7.decode_response("text/xml", answer.content).status_code == 1000
        assert await state_of(gateway, tracking_id) == models.RecipientState.DELIVERED.value


async def test_a_reused_message_id_reports_on_the_newest_recipient(
    gateway: Gateway, media_server: MediaServer
) -> None:
    """An MMSC that hands out a MessageID again (after a reset) reports on the recipient it
    took last; the older one, already final, stays as it was."""
    old = await queued(gateway, media_server)
    await take(gateway, old, "m-1")
    first = await gateway.mm7(delivery_report("m-1", "12399471613", "Rejected"))
    assert mm7.decode_response("text/xml", first.content).status_code == 1000
    assert await state_of(gateway, old) == models.RecipientState.REJECTED.value
    new = await queued(gateway, media_server)
    await take(gateway, new, "m-1")
    again = await gateway.mm7(delivery_report("m-1", "12399471613", "Retrieved"))
    assert mm7.decode_response("text/xml", again.content).status_code == 1000
    assert await state_of(gateway, new) == models.RecipientState.DELIVERED.value
    assert await state_of(gateway, old) == models.RecipientState.REJECTED.value


@pytest.mark.config(
    routes=(Route(name="by-ip", kind="mm7", url=URL, inbound_ips=("127.0.0.0/8",), default=True),)
)
@pytest.mark.parametrize("auth", [None, ("anyone", "anything")])
async def test_a_route_of_networks_only_takes_its_networks_without_a_pair(
    gateway: Gateway, media_server: MediaServer, auth: tuple[str, str] | None
) -> None:
    """A route naming only `inbound_ips` authenticates any request from those networks,
    with or without a Basic pair, and its report moves its message."""
    tracking_id = await queued(gateway, media_server)
    await take(gateway, tracking_id, "m-ip", route="by-ip")
    answer = await gateway.mm7(delivery_report("m-ip", "12399471613", "Retrieved"), auth=auth)
    assert mm7.decode_response("text/xml", answer.content).status_code == 1000
    assert await postback_codes(gateway) == ["N102"]


@pytest.mark.config(
    routes=(Route(name="by-ip", kind="mm7", url=URL, inbound_ips=("10.0.0.0/8",), default=True),)
)
async def test_a_route_of_networks_only_refuses_other_addresses(gateway: Gateway) -> None:
    """The same route refuses a request from 127.0.0.1, outside its networks: 401."""
    answer = await gateway.mm7(delivery_report("m-ip", "12399471613", "Retrieved"), auth=None)
    assert answer.status_code == 401
