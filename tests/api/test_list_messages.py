"""GET /v1/messages: the caller's recipients, newest first, keyset-paged, filtered, and only
the caller's own."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import httpx
import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from mmsgate import models
from mmsgate.settings import normalize_database_url
from mmsgate.store import accounts, listing
from mmsgate.store.db import Database
from mmsgate.store.schema import recipients
from tests.api.helpers import fields, sendings, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio
T0 = dt.datetime(2026, 11, 3, 12, 0, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class Caller:
    """An account of the gateway and the template it sends."""

    key: str
    sender: str
    service_id: str
    mms_id: str


async def caller_of(gw: Gateway, key: str, sender: str, service_id: str = "") -> Caller:
    saved = fields((await gw.xml(text_template(key))).content)
    assert saved["status"] == "Success", saved
    return Caller(key, sender, service_id, saved["mms-id"])


async def acme(gw: Gateway) -> Caller:
    return await caller_of(gw, gw.api_key, "28444", "32113")


async def send(caller: Caller, gw: Gateway, to: str, reference: str = "") -> list[str]:
    """Send the caller's template to `to` (one number or a comma list): its tracking-ids."""
    extra = f"<client-reference>{reference}</client-reference>" if reference else ""
    service = f"<service-id>{caller.service_id}</service-id>" if caller.service_id else ""
    body = (
        f"<request><action>sendSavedMMS</action><api-key>{caller.key}</api-key>"
        f"<mms-id>{caller.mms_id}</mms-id><to>{to}</to><from>{caller.sender}</from>{service}"
        f"<fallback-sms-text>See it</fallback-sms-text>{extra}</request>"
    )
    answer = (await gw.xml(body)).content
    if "," not in to:
        got = fields(answer)
        assert got["status"] == "Success", got
        return [got["tracking-id"]]
    return [s["tracking-id"] for s in sendings(answer)]


async def set_rows(gw: Gateway, tracking_ids: list[str], **values: object) -> None:
    """Give these recipients a state or a creation time of the test's choosing."""
    async with gw.services.db.write() as conn:
        await conn.execute(
            recipients.update().where(recipients.c.tracking_id.in_(tracking_ids)).values(**values)
        )


async def listed(gw: Gateway, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"x-api-key": key or gw.api_key}
    return await gw.client.get("/v1/messages", params=params, headers=headers)


async def ids(gw: Gateway, key: str | None = None, **params: str) -> list[str]:
    response = await listed(gw, key, **params)
    assert response.status_code == 200, response.text
    return [item["tracking-id"] for item in response.json()["messages"]]


async def refused(gw: Gateway, key: str | None = None, **params: str) -> tuple[int, str, str]:
    response = await listed(gw, key, **params)
    body = response.json()
    assert set(body) == {"error-code", "error-info"}, body
    return response.status_code, body["error-code"], body["error-info"]


async def every_page(gw: Gateway, limit: int, **params: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        asked = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        body = (await listed(gw, **asked)).json()
        pages.append([item["tracking-id"] for item in body["messages"]])
        cursor = body["next-cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ends"


async def test_paging_returns_every_item_once_newest_first(gateway: Gateway) -> None:
    """Pages of 3 through 12 recipients (7 of one send, which share a creation time) give
    each exactly once, newest first, then a null cursor."""
    caller = await acme(gateway)
    batch = await send(caller, gateway, ",".join(f"1774555{n:04d}" for n in range(100, 107)))
    singles = [(await send(caller, gateway, f"1774556{n:04d}"))[0] for n in range(5)]
    times = [T0 + dt.timedelta(minutes=n) for n in range(1, 6)]
    for tracking_id, at in zip(singles, times, strict=True):
        await set_rows(gateway, [tracking_id], created_at=at)
    await set_rows(gateway, batch, created_at=T0)
    pages = await every_page(gateway, 3)
    flat = [t for page in pages for t in page]
    assert [len(p) for p in pages] == [3, 3, 3, 3]
    assert flat == singles[::-1] + sorted(batch, reverse=True)
    assert flat == await ids(gateway, limit="500")


async def test_sends_made_while_paging_do_not_shift_the_pages(gateway: Gateway) -> None:
    """Messages sent between two pages are not in the pages that follow, and no item of
    the first listing is skipped or given twice."""
    caller = await acme(gateway)
    first = await send(caller, gateway, ",".join(f"1774555{n:04d}" for n in range(100, 106)))
    await set_rows(gateway, first, created_at=T0)
    page = (await listed(gateway, limit="4")).json()
    later = await send(caller, gateway, "17745550200,17745550201")
    rest = (await listed(gateway, limit="4", cursor=page["next-cursor"])).json()
    seen = [i["tracking-id"] for i in page["messages"] + rest["messages"]]
    assert seen == sorted(first, reverse=True)
    assert rest["next-cursor"] is None
    assert set(await ids(gateway, limit="2")) == set(later)


async def test_an_exact_last_page_ends_with_a_null_cursor(gateway: Gateway) -> None:
    """When the items end with a page, that page's next-cursor is null: no empty page follows."""
    caller = await acme(gateway)
    await send(caller, gateway, "17745550100,17745550101,17745550102,17745550103")
    assert [len(p) for p in await every_page(gateway, 2)] == [2, 2]
    assert [len(p) for p in await every_page(gateway, 4)] == [4]


async def test_an_empty_account_lists_nothing(gateway: Gateway) -> None:
    """An account without sends answers an empty list and a null cursor."""
    assert (await listed(gateway)).json() == {"messages": [], "next-cursor": None}


async def test_items_are_the_status_answer(gateway: Gateway) -> None:
    """Each item is exactly what GET /v1/messages/{tracking-id} answers for it."""
    caller = await acme(gateway)
    sent = await send(caller, gateway, "17745550100,17745550101", reference="order-7")
    body = (await listed(gateway)).json()
    assert len(body["messages"]) == 2
    for item in body["messages"]:
        one = await gateway.client.get(
            f"/v1/messages/{item['tracking-id']}", headers={"x-api-key": gateway.api_key}
        )
        assert item == one.json()
        assert item["tracking-id"] in sent
        assert item["client-reference"] == "order-7"
        assert [h["state"] for h in item["history"]] == ["queued"]


async def test_each_filter_alone_and_combined(gateway: Gateway) -> None:
    """to, state, client-reference, since and until each narrow the list, and together
    they all must hold."""
    caller = await acme(gateway)
    a = await send(caller, gateway, "17745550100", reference="ref-a")
    b = await send(caller, gateway, "17745550101", reference="ref-a")
    c = await send(caller, gateway, "17745550100", reference="ref-b")
    await set_rows(gateway, a, created_at=T0, state="delivered")
    await set_rows(gateway, b, created_at=T0 + dt.timedelta(hours=1), state="failed")
    await set_rows(gateway, c, created_at=T0 + dt.timedelta(hours=2))
    assert await ids(gateway, to="17745550100") == c + a
    assert await ids(gateway, state="delivered") == a
    assert await ids(gateway, state="delivered,queued") == c + a
    assert await ids(gateway, **{"client-reference": "ref-a"}) == b + a
    assert await ids(gateway, since=(T0 + dt.timedelta(hours=1)).isoformat()) == c + b
    assert await ids(gateway, until=(T0 + dt.timedelta(hours=1)).isoformat()) == a
    both = {"to": "17745550100", "client-reference": "ref-a", "state": "delivered"}
    assert await ids(gateway, **both) == a
    assert await ids(gateway, **{**both, "since": (T0 + dt.timedelta(seconds=1)).isoformat()}) == []
    assert await ids(gateway, to="17745550101", state="queued") == []


async def test_state_may_be_repeated(gateway: Gateway) -> None:
    """`state` given twice lists recipients in either state, in any letter case."""
    caller = await acme(gateway)
    a = await send(caller, gateway, "17745550100")
    b = await send(caller, gateway, "17745550101")
    await set_rows(gateway, a, state="delivered", created_at=T0)
    await set_rows(gateway, b, state="expired", created_at=T0 + dt.timedelta(seconds=1))
    response = await gateway.client.get(
        "/v1/messages?state=Delivered&state=expired", headers={"x-api-key": gateway.api_key}
    )
    assert [i["tracking-id"] for i in response.json()["messages"]] == b + a


async def test_to_is_normalised_as_a_send_does(gateway: Gateway) -> None:
    """`to` finds a number written with a leading +, whether encoded (%2B) or not (a space)."""
    caller = await acme(gateway)
    sent = await send(caller, gateway, "17745550100")
    headers = {"x-api-key": gateway.api_key}
    for query in ("to=%2B17745550100", "to=+17745550100", "to=17745550100"):
        body = (await gateway.client.get(f"/v1/messages?{query}", headers=headers)).json()
        assert [i["tracking-id"] for i in body["messages"]] == sent, query


async def test_since_is_inclusive_and_until_exclusive(gateway: Gateway) -> None:
    """A recipient created at exactly `since` is listed; one at exactly `until` is not;
    a microsecond either side decides."""
    caller = await acme(gateway)
    tick = dt.timedelta(microseconds=1)
    before, at, after = [await send(caller, gateway, f"1774555010{n}") for n in range(3)]
    await set_rows(gateway, before, created_at=T0 - tick)
    await set_rows(gateway, at, created_at=T0)
    await set_rows(gateway, after, created_at=T0 + tick)
    assert await ids(gateway, since=T0.isoformat()) == after + at
    assert await ids(gateway, until=T0.isoformat()) == before
    assert await ids(gateway, since=(T0 - tick).isoformat(), until=T0.isoformat()) == before
    assert await ids(gateway, since=T0.isoformat(), until=(T0 + tick).isoformat()) == at


async def test_since_and_until_take_dates_and_offsets(gateway: Gateway) -> None:
    """A date means its midnight UTC, a date-time without offset is UTC, an offset is
    honoured, and `Z` is UTC."""
    caller = await acme(gateway)
    day = await send(caller, gateway, "17745550100")
    late = await send(caller, gateway, "17745550101")
    await set_rows(gateway, day, created_at=dt.datetime(2026, 11, 3, 0, 0, tzinfo=dt.UTC))
    await set_rows(gateway, late, created_at=dt.datetime(2026, 11, 3, 23, 30, tzinfo=dt.UTC))
    assert await ids(gateway, since="2026-11-03", until="2026-11-04") == late + day
    assert await ids(gateway, until="2026-11-03") == []
    assert await ids(gateway, since="2026-11-03T23:30:00") == late
    assert await ids(gateway, since="2026-11-04T00:30:00+01:00") == late
    assert await ids(gateway, since="2026-11-03T23:30:00.001Z") == []
    headers = {"x-api-key": gateway.api_key}
    unencoded = "/v1/messages?since=2026-11-04T00:30:00+01:00"  # the + arrives as a space
    body = (await gateway.client.get(unencoded, headers=headers)).json()
    assert [i["tracking-id"] for i in body["messages"]] == late


async def test_limit_bounds(gateway: Gateway) -> None:
    """limit takes 1 to 500 (50 by default); anything else is 400 E100 naming the range."""
    caller = await acme(gateway)
    await send(caller, gateway, ",".join(f"1774555{n:04d}" for n in range(100, 155)))
    assert len(await ids(gateway)) == 50
    assert len(await ids(gateway, limit="1")) == 1
    assert len(await ids(gateway, limit="500")) == 55
    for bad in ("0", "501", "-1", "1.5", "ten", "٣", "99999999999999999999"):
        status, code, info = await refused(gateway, limit=bad)
        assert (status, code) == (400, "E100"), bad[:80]
        assert "1 to 500" in info, info


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"state": "delivred"}, "delivred"),
        ({"state": "queued,"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"since": "2026-11-04", "until": "2026-11-03"}, "before"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),
        ({"cursor": "é"}, "cursor"),
        ({"satte": "queued"}, "satte"),
        ({"client_reference": "x"}, "client_reference"),
    ],
)
async def test_bad_parameters_are_400_e100(
    gateway: Gateway, params: dict[str, str], names: str
) -> None:
    """A bad state, date, range, cursor or an unknown parameter is 400 E100 saying which."""
    status, code, info = await refused(gateway, **params)
    assert (status, code) == (400, "E100")
    assert names in info, info


async def test_a_parameter_given_twice_is_refused(gateway: Gateway) -> None:
    """Two values for a single-valued parameter are 400 E100, not one of them chosen."""
    response = await gateway.client.get(
        "/v1/messages?to=17745550100&to=17745550101", headers={"x-api-key": gateway.api_key}
    )
    assert response.status_code == 400
    assert response.json()["error-code"] == "E100"
    assert "more than once" in response.json()["error-info"]


async def test_a_client_reference_with_a_nul_is_400_e100(gateway: Gateway) -> None:
    """A client-reference holding a NUL, which no send can have, is refused on both
    databases (PostgreSQL cannot compare one)."""
    status, code, info = await refused(gateway, **{"client-reference": "a\x00b"})
    assert (status, code) == (400, "E100")
    assert "NUL" in info


async def test_a_bad_number_is_400_e110(gateway: Gateway) -> None:
    """A `to` that is no phone number is refused as a send refuses it, E110."""
    status, code, info = await refused(gateway, to="12345abc")
    assert (status, code) == (400, "E110")
    assert "12345abc" in info


async def test_an_altered_cursor_is_400_e100(gateway: Gateway) -> None:
    """A cursor with its position, its check or its end changed is refused, never a 500."""
    caller = await acme(gateway)
    await send(caller, gateway, "17745550100,17745550101,17745550102")
    cursor = (await listed(gateway, limit="1")).json()["next-cursor"]
    micros, tracking_id, check = json.loads(base64.urlsafe_b64decode(cursor + "=="))

    def encoded(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()

    for bad in (
        encoded([micros + 1, tracking_id, check]),
        encoded([micros, tracking_id[:-1] + "x", check]),
        encoded([micros, tracking_id, "0" * 16]),
        encoded([10**30, tracking_id, check]),
        encoded({"a": 1, "b": 2, "c": 3}),
        encoded([[[[[[[[[[[]]]]]]]]]]]),
        base64.urlsafe_b64encode(b"[" * 3_000).decode(),  # nested past the recursion limit
        cursor[:-3],
        cursor + "A" * 200,
    ):
        status, code, _info = await refused(gateway, cursor=bad)
        assert (status, code) == (400, "E100"), bad[:80]
    assert (await listed(gateway, cursor=cursor + "==")).status_code == 200


async def test_without_a_valid_key_is_401(gateway: Gateway) -> None:
    """No key, or one of no account, is 401 E104 in the /v1 shape."""
    missing = await gateway.client.get("/v1/messages")
    assert missing.status_code == 401
    assert missing.json()["error-code"] == "E104"
    status, code, _ = await refused(gateway, key="wrong-key")
    assert (status, code) == (401, "E104")


async def test_another_accounts_messages_never_appear(gateway: Gateway) -> None:
    """Two accounts sending to the same numbers with the same client-reference each list
    only their own, whatever the filters, and one's cursor is refused to the other."""
    other = await accounts.create(gateway.services.db, "other", senders=["28555"])
    assert other is not None
    mine_caller = await acme(gateway)
    theirs_caller = await caller_of(gateway, other.api_key, "28555")
    mine = await send(mine_caller, gateway, "17745550100,17745550101", reference="same")
    theirs = await send(theirs_caller, gateway, "17745550100,17745550101", reference="same")
    same = {"to": "17745550100", "client-reference": "same", "state": "queued"}
    assert sorted(await ids(gateway)) == sorted(mine)
    assert sorted(await ids(gateway, other.api_key)) == sorted(theirs)
    assert set(await ids(gateway, **same)) <= set(mine)
    assert set(await ids(gateway, other.api_key, **same)) <= set(theirs)
    cursor = (await listed(gateway, limit="1")).json()["next-cursor"]
    status, code, _ = await refused(gateway, other.api_key, cursor=cursor)
    assert (status, code) == (400, "E100")


async def test_a_page_costs_the_same_queries_whatever_its_size(gateway: Gateway) -> None:
    """A page of 40 items takes three queries (recipients, their histories, their fallbacks),
    as a page of 1 does: none per item."""
    caller = await acme(gateway)
    await send(caller, gateway, ",".join(f"1774555{n:04d}" for n in range(100, 140)))
    statements: list[str] = []

    def counted(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    await ids(gateway, limit="1")  # the key is looked up once, then cached
    engine = gateway.services.db.reader.sync_engine
    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        await ids(gateway, limit="1")
        one = len(statements)
        await ids(gateway, limit="40")
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    assert len(statements) - one == one == 3


async def test_the_request_line_names_the_action(gateway: Gateway) -> None:
    """The api.request line of a listing says listMessages, its account and code."""
    with structlog.testing.capture_logs() as logs:
        await listed(gateway, limit="x")
    line = next(e for e in logs if e["event"] == "api.request")
    assert (line["action"], line["account"], line["code"]) == ("listMessages", "acme", "E100")


class Explain(Executable, ClauseElement):
    """EXPLAIN of a statement, its parameters bound as the statement binds them."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[tuple[object, ...]]) -> None:
        self.statement = statement


@compiles(Explain)
def _explain(element: Explain, compiler: SQLCompiler, **kw: object) -> str:
    verb = "EXPLAIN QUERY PLAN" if compiler.dialect.name == "sqlite" else "EXPLAIN"
    return f"{verb} {compiler.process(element.statement, **kw)}"


@pytest.mark.parametrize(
    "where",
    [
        listing.MessageFilter(),
        listing.MessageFilter(states=frozenset({models.RecipientState.DELIVERED})),
        listing.MessageFilter(since=T0, until=T0 + dt.timedelta(days=1)),
    ],
)
async def test_the_page_is_read_in_index_order(db_url: str, where: listing.MessageFilter) -> None:
    """The page query walks ix_recipients_account_created for the account, in the index's
    order, with no sort, on the first page and after a cursor."""
    db = Database(normalize_database_url(db_url))
    await db.migrate()
    try:
        for after in (None, listing.Position(T0, "abc")):
            async with db.write() as conn:
                if not db.embedded:  # the tables are empty: make the planner show its index
                    await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                plan = "\n".join(
                    str(row[-1])
                    for row in await conn.execute(Explain(listing.page_query(1, where, 50, after)))
                )
            assert "ix_recipients_account_created" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
            assert "Sort" not in plan, plan
    finally:
        await db.close()
