"""Idempotency-Key on POST /ep/v1/, in-process on both databases: a retry answers the first
answer and sends nothing more, another request with the key is refused, keys are per
account, bad keys and refused requests store nothing, a key expires after 24 h, and two
requests racing with one key make one send."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog

from mmsgate import errors, models
from mmsgate import settings as settings_mod
from mmsgate.api.app import build_services, create_app
from mmsgate.store import accounts, idempotency, schema
from mmsgate.store.db import Database
from mmsgate.store.writer import NewSend, NewTemplate, Writer
from tests.api.helpers import failure_code, fields, send_saved, sendings, text_template
from tests.conftest import Gateway, open_gateway

pytestmark = pytest.mark.anyio
DIFFERENT = "Invalid request: Idempotency-Key '{}' was already used with a different request"


def send_mms(key: str, to: str = "17745550100", text: str = "Hello") -> str:
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>{to}</to>"
        "<from>28444</from><service-id>32113</service-id><name>inline</name>"
        f"<fallback-sms-text>See it</fallback-sms-text><slide><message-text>{text}"
        "</message-text></slide></request>"
    )


async def post(gateway: Gateway, body: str, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    response = await gateway.xml(body, headers=headers)
    assert response.status_code == 200
    return response


@dataclasses.dataclass(frozen=True)
class Counts:
    """What the database holds: rows of each table a request writes."""

    templates: int
    messages: int
    recipients: int
    deliveries: int
    keys: int


async def counts(db: Database) -> Counts:
    async with db.read() as conn:

        async def n(table: sa.Table, *where: Any) -> int:
            query = sa.select(sa.func.count()).select_from(table).where(*where)
            return int(await conn.scalar(query) or 0)

        return Counts(
            templates=await n(schema.templates),
            messages=await n(schema.messages),
            recipients=await n(schema.recipients),
            deliveries=await n(schema.jobs, schema.jobs.c.kind == "deliver"),
            keys=await n(schema.idempotency_keys),
        )


async def saved_template(gateway: Gateway) -> str:
    return fields((await gateway.xml(text_template(gateway.api_key))).content)["mms-id"]


@pytest.mark.parametrize("action", ["sendMMS", "sendSavedMMS", "saveMMS", "list"])
async def test_a_retry_answers_the_first_answer_byte_for_byte_and_sends_once(
    gateway: Gateway, action: str
) -> None:
    """The same key with the same body answers the same bytes again, and the database holds
    one message (recipients, delivery jobs) or one template, whatever the action."""
    key = gateway.api_key
    bodies: dict[str, Callable[[], Any]] = {
        "sendMMS": lambda: send_mms(key),
        "saveMMS": lambda: text_template(key),
    }
    body = bodies[action]() if action in bodies else None
    if body is None:
        mms_id = await saved_template(gateway)
        to = "17745550100" if action == "sendSavedMMS" else "17745550100,nonsense,17745550101"
        body = send_saved(key, mms_id, to=to)
    before = await counts(gateway.services.db)
    first = await post(gateway, body, "order-4711")
    assert fields(first.content)["status"] == "Success", first.text
    after_first = await counts(gateway.services.db)
    with structlog.testing.capture_logs() as logs:
        again = [await post(gateway, body, "order-4711") for _ in range(3)]
    assert [r.content for r in again] == [first.content] * 3
    assert await counts(gateway.services.db) == after_first
    assert after_first.keys == before.keys + 1
    if action == "saveMMS":
        assert after_first.templates == before.templates + 1
    else:
        numbers = 2 if action == "list" else 1
        assert after_first.messages == before.messages + 1
        assert after_first.recipients == after_first.deliveries == before.recipients + numbers
    lines = [line for line in logs if line["event"] == "api.request"]
    assert [line.get("replayed") for line in lines] == [True] * 3
    if action == "list":
        assert [s.get("error-code") for s in sendings(first.content)] == [None, "E110", None]


async def test_another_body_with_a_used_key_is_refused_and_writes_nothing(
    gateway: Gateway,
) -> None:
    """A key answered for one request refuses another (E100 naming the header and the key),
    on any action, and the refusal writes nothing."""
    key = gateway.api_key
    assert fields((await post(gateway, send_mms(key), "k-1")).content)["status"] == "Success"
    mms_id = await saved_template(gateway)
    before = await counts(gateway.services.db)
    for other in (
        send_mms(key, text="Hello!"),
        send_mms(key, to="17745550199"),
        send_saved(key, mms_id),
    ):
        response = await post(gateway, other, "k-1")
        got = fields(response.content)
        assert (got["status"], got["error-code"]) == ("Failure", "E100")
        assert got["error-info"] == DIFFERENT.format("k-1")
    assert await counts(gateway.services.db) == before


async def test_keys_are_per_account(gateway: Gateway) -> None:
    """One key used by two accounts makes two sends, each replayed to its own account."""
    other = await accounts.create(
        gateway.services.db, "globex", senders=["28555"], service_ids=["32113"]
    )
    assert other is not None
    mine = send_mms(gateway.api_key)
    theirs = send_mms(other.api_key).replace("28444", "28555")
    answers = [await post(gateway, body, "shared-key") for body in (mine, theirs, mine, theirs)]
    assert [fields(a.content)["status"] for a in answers] == ["Success"] * 4
    assert answers[0].content == answers[2].content
    assert answers[1].content == answers[3].content
    assert fields(answers[0].content)["tracking-id"] != fields(answers[1].content)["tracking-id"]
    assert (await counts(gateway.services.db)).messages == 2


@pytest.mark.parametrize(
    ("header", "info"),
    [
        ([(b"Idempotency-Key", b"")], "must be 1 to 255 printable ASCII characters"),
        ([(b"Idempotency-Key", b"k" * 256)], "must be 1 to 255 printable ASCII characters"),
        ([(b"Idempotency-Key", "café".encode())], "must be 1 to 255 printable ASCII characters"),
        ([(b"Idempotency-Key", b"tab\there")], "must be 1 to 255 printable ASCII characters"),
        ([(b"Idempotency-Key", b"a"), (b"Idempotency-Key", b"a")], "given 2 times, at most once"),
    ],
    ids=["empty", "too-long", "not-ascii", "control", "twice"],
)
async def test_a_bad_key_is_refused_and_nothing_is_written(
    gateway: Gateway, header: list[tuple[bytes, bytes]], info: str
) -> None:
    """An empty key, one over 255 characters, one not printable ASCII, or the header twice:
    E100 naming the header, and no send."""
    before = await counts(gateway.services.db)
    response = await gateway.xml(send_mms(gateway.api_key), headers=header)
    got = fields(response.content)
    assert (got["status"], got["error-code"]) == ("Failure", "E100")
    assert got["error-info"] == f"Invalid request: Idempotency-Key {info}"
    assert got["to"] == "17745550100"
    assert await counts(gateway.services.db) == before


async def test_the_longest_key_and_any_printable_character_are_taken(gateway: Gateway) -> None:
    """255 printable ASCII characters, spaces and punctuation included, make a valid key."""
    key = ("a b~!\"'<&>{}" * 30)[:255]
    first = await post(gateway, send_mms(gateway.api_key), key)
    assert fields(first.content)["status"] == "Success"
    assert (await post(gateway, send_mms(gateway.api_key), key)).content == first.content


async def test_a_refused_request_stores_no_key(gateway: Gateway) -> None:
    """A request refused with its key (a sender not the account's) leaves the key free: the
    same body is refused again for what it is, and the fixed body is accepted with it."""
    wrong = send_mms(gateway.api_key).replace("28444", "99999")
    assert failure_code((await post(gateway, wrong, "retry-me")).content) == "E111"
    assert failure_code((await post(gateway, wrong, "retry-me")).content) == "E111"
    assert (await counts(gateway.services.db)).keys == 0
    fixed = await post(gateway, send_mms(gateway.api_key), "retry-me")
    assert fields(fixed.content)["status"] == "Success"
    assert (await counts(gateway.services.db)).keys == 1


async def test_a_send_refused_inside_the_transaction_stores_no_key(gateway: Gateway) -> None:
    """A keyed send the writer refuses (its template is gone, E241) stores neither the send
    nor the key; a keyed template beside it in the same batch stores both."""
    db, writer = gateway.services.db, gateway.services.writer
    now = dt.datetime.now(dt.UTC)
    send = NewSend(
        message_id="m" * 32,
        account_id=gateway.account.id,
        action="sendSavedMMS",
        sender="28444",
        recipients=(("t" * 20, "17745550100"),),
        expires_at=now + dt.timedelta(days=1),
        link_expires_at=now + dt.timedelta(days=1),
        template_id=999,
        key=idempotency.NewKey("gone", "f" * 64, {"kind": "sent"}),
    )
    template = NewTemplate(
        account_id=gateway.account.id,
        kind="saved",
        name="t",
        subject=None,
        state=models.TemplateState.READY,
        slides=[],
        total_size=0,
        key=idempotency.NewKey("kept", "e" * 64, {"kind": "saved"}),
    )
    got = await asyncio.gather(
        writer.accept(send), writer.save_template(template), return_exceptions=True
    )
    assert isinstance(got[0], errors.ApiError)
    assert got[0].code.value == "E241"
    assert isinstance(got[1], int)
    assert await idempotency.find(db, gateway.account.id, "gone", now) is None
    kept = await idempotency.find(db, gateway.account.id, "kept", now)
    assert kept is not None
    assert kept.mms_id == got[1]
    assert (await counts(db)).messages == 0


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@contextlib.asynccontextmanager
async def gateway_with(
    settings: settings_mod.Settings, change: Callable[[Any], Any]
) -> AsyncIterator[Gateway]:
    """A gateway whose services `change` alters (a clock, a writer)."""
    async with open_gateway(settings) as plain:
        services = change(build_services(settings, plain.services.db))
        app = create_app(settings, services)
        async with app.routes.router.lifespan_context(app.routes):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield Gateway(client, services, plain.api_key, plain.account)


async def test_a_key_binds_for_24_hours_then_is_free_again(
    settings: settings_mod.Settings,
) -> None:
    """Just under 24 h a key still replays and refuses another body; at 24 h it is free: a
    new request with it is accepted, replaces the old row, and is what it replays from then."""
    clock = Clock()

    def clocked(services: Any) -> Any:
        return dataclasses.replace(services, clock=clock, writer=Writer(services.db, clock))

    async with gateway_with(settings, clocked) as gateway:
        first = await post(gateway, send_mms(gateway.api_key), "daily")
        clock.now += dt.timedelta(hours=24) - dt.timedelta(seconds=1)
        assert (await post(gateway, send_mms(gateway.api_key), "daily")).content == first.content
        other = send_mms(gateway.api_key, text="tomorrow")
        assert failure_code((await post(gateway, other, "daily")).content) == "E100"
        clock.now += dt.timedelta(seconds=1)
        second = await post(gateway, other, "daily")
        assert fields(second.content)["status"] == "Success"
        assert fields(second.content)["tracking-id"] != fields(first.content)["tracking-id"]
        assert (await post(gateway, other, "daily")).content == second.content
        assert (
            failure_code((await post(gateway, send_mms(gateway.api_key), "daily")).content)
            == "E100"
        )
        got = await counts(gateway.services.db)
        assert (got.messages, got.keys) == (2, 1)


async def test_expired_keys_are_pruned_and_fresh_ones_kept(gateway: Gateway) -> None:
    """`prune` deletes the keys 24 h old or more, in batches, and keeps the younger ones;
    deleting the account deletes its keys."""
    db = gateway.services.db
    for n in range(5):
        await post(gateway, send_mms(gateway.api_key, text=f"t{n}"), f"k{n}")
    async with db.write() as conn:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
        await conn.execute(
            schema.idempotency_keys.update()
            .where(schema.idempotency_keys.c.key.in_(["k0", "k1", "k2"]))
            .values(created_at=old)
        )
    assert await idempotency.prune(db, now=dt.datetime.now(dt.UTC), batch=2) == 3
    async with db.read() as conn:
        left = set((await conn.execute(sa.select(schema.idempotency_keys.c.key))).scalars())
    assert left == {"k3", "k4"}
    deleted = await accounts.delete(db, "acme", force=True)
    assert deleted.deleted
    assert (await counts(db)).keys == 0


class GatedWriter(Writer):
    """The real writer, holding each accept until both racing requests have reached it
    (so both looked their key up and found it free); `one_by_one` then lets the second
    write only after the first committed, else both join one batch."""

    def __init__(self, db: Database, *, one_by_one: bool) -> None:
        super().__init__(db)
        self.one_by_one = one_by_one
        self.arrived = 0
        self.both = asyncio.Event()
        self.turn = asyncio.Lock()

    async def accept(self, send: NewSend) -> int:
        self.arrived += 1
        if self.arrived == 2:
            self.both.set()
        await self.both.wait()
        if not self.one_by_one:
            return await super().accept(send)
        async with self.turn:
            return await super().accept(send)


@pytest.mark.parametrize("one_by_one", [False, True], ids=["one-batch", "one-after-the-other"])
async def test_two_requests_racing_with_one_key_make_one_send(
    settings: settings_mod.Settings, one_by_one: bool
) -> None:
    """Two requests with one key that both found it free: one send, and both answered with
    its tracking-id (byte for byte the same answer), never an E503."""

    def gated(services: Any) -> Any:
        return dataclasses.replace(services, writer=GatedWriter(services.db, one_by_one=one_by_one))

    async with gateway_with(settings, gated) as gateway:
        mms_id = await saved_template(gateway)
        body = send_saved(gateway.api_key, mms_id)
        with structlog.testing.capture_logs() as logs:
            answers = await asyncio.gather(post(gateway, body, "race"), post(gateway, body, "race"))
        # the loser found the key free and lost it in the writer, not at its lookup
        assert [line["event"] for line in logs].count("store.key_taken") == 1
        assert answers[0].content == answers[1].content
        assert fields(answers[0].content)["status"] == "Success"
        got = await counts(gateway.services.db)
        assert (got.messages, got.recipients, got.deliveries, got.keys) == (1, 1, 1, 1)


@pytest.mark.parametrize("one_by_one", [False, True], ids=["one-batch", "one-after-the-other"])
async def test_two_different_requests_racing_with_one_key_make_one_send(
    settings: settings_mod.Settings, one_by_one: bool
) -> None:
    """Two different requests with one key that both found it free: one is sent, the other
    refused (E100, the key used with a different request) and nothing of it written."""

    def gated(services: Any) -> Any:
        return dataclasses.replace(services, writer=GatedWriter(services.db, one_by_one=one_by_one))

    async with gateway_with(settings, gated) as gateway:
        mms_id = await saved_template(gateway)
        bodies = [
            send_saved(gateway.api_key, mms_id, to=to) for to in ("17745550100", "17745550101")
        ]
        with structlog.testing.capture_logs() as logs:
            answers = await asyncio.gather(*(post(gateway, b, "race") for b in bodies))
        assert [line["event"] for line in logs].count("store.key_taken") == 1
        got = sorted(fields(a.content)["status"] for a in answers)
        assert got == ["Failure", "Success"]
        refused = next(fields(a.content) for a in answers if b"Failure" in a.content)
        assert (refused["error-code"], refused["error-info"]) == ("E100", DIFFERENT.format("race"))
        got_counts = await counts(gateway.services.db)
        assert (got_counts.messages, got_counts.recipients, got_counts.keys) == (1, 1, 1)


async def test_without_the_header_nothing_changes(gateway: Gateway) -> None:
    """Without a key the same body sent twice is two sends, and no key is stored."""
    body = send_mms(gateway.api_key)
    answers = [await post(gateway, body, None) for _ in range(2)]
    assert answers[0].content != answers[1].content
    got = await counts(gateway.services.db)
    assert (got.messages, got.keys) == (2, 0)


async def test_without_the_header_no_statement_touches_the_keys(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send without a key looks up no key and writes none: no statement on the keys
    table, the hot path (sendSavedMMS) as before."""

    async def no_lookup(*_args: object) -> None:
        raise AssertionError("a key was looked up for a request without one")

    monkeypatch.setattr(idempotency, "find", no_lookup)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    engine = gateway.services.db.writer.sync_engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        mms_id = await saved_template(gateway)
        for body in (send_saved(gateway.api_key, mms_id), send_mms(gateway.api_key)):
            assert fields((await post(gateway, body, None)).content)["status"] == "Success"
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert any("INSERT INTO messages" in s for s in statements)
    assert not [s for s in statements if "idempotency_keys" in s]


async def test_other_actions_check_the_key_but_ignore_it(gateway: Gateway) -> None:
    """getMMSTemplates and deleteMMSID with a key answer as without one, twice alike."""
    key = gateway.api_key
    listing = f"<request><action>getMMSTemplates</action><api-key>{key}</api-key></request>"
    assert fields((await post(gateway, listing, "list")).content)["status"] == "Success"
    mms_id = await saved_template(gateway)
    delete = f"<request><action>deleteMMSID</action><api-key>{key}</api-key><mms-id>{mms_id}</mms-id></request>"
    assert fields((await post(gateway, delete, "del")).content)["status"] == "Success"
    assert failure_code((await post(gateway, delete, "del")).content) == "E241"
    assert (
        failure_code((await gateway.xml(listing, headers={"Idempotency-Key": ""})).content)
        == "E100"
    )
    assert (await counts(gateway.services.db)).keys == 0
