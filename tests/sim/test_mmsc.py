"""The simulated MMSC: checks, scripted answers per number, and its delivery reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from mmsgate import mm7_codec as mm7
from mmsgate.carriers.mm7 import Mm7Carrier
from mmsgate.settings import Route
from mmsgate.sim.mmsc import SimulatedMmsc
from tests.carriers.test_mm7_codec import SUBMIT
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def carrier_for(sim: SimulatedMmsc) -> AsyncIterator[Mm7Carrier]:
    """An MM7 client submitting to `sim`, served on a loopback port for the block."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until the server runs
    # lifespan off: reports scheduled by a submit outlive the server, as the tests wait for them
    server = uvicorn.Server(uvicorn.Config(sim.app(), lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    carrier = Mm7Carrier(
        Route(
            name="sim",
            kind="mm7",
            url=f"http://{sock.getsockname()[0]}:{sock.getsockname()[1]}/mm7",
        )
    )
    try:
        yield carrier
    finally:
        await carrier.close()
        server.should_exit = True
        await serving
        sock.close()


async def reports(receiver: Receiver, count: int) -> list[mm7.Incoming]:  # noqa: F811
    for _ in range(1000):  # the receiver is a threaded server: poll it, 10 s at most
        if len(receiver.received) >= count:
            break
        await asyncio.sleep(0.01)
    assert len(receiver.received) >= count, "reports did not arrive within 10 s"
    return [mm7.decode_request("text/xml", body) for _, body in receiver.received]


@contextlib.asynccontextmanager
async def reporting(url: str, **options: object) -> AsyncIterator[SimulatedMmsc]:
    """A simulated MMSC reporting to `url`, closed (its report client too) after the block."""
    sim = SimulatedMmsc(url, **options)  # type: ignore[arg-type]
    try:
        yield sim
    finally:
        await sim.aclose()


async def send(sim: SimulatedMmsc, number: str, **changes: object) -> object:
    async with carrier_for(sim) as carrier:
        return await carrier.submit(dataclasses.replace(SUBMIT, recipients=[number], **changes))  # type: ignore[arg-type]


async def test_ordinary_number_is_accepted_and_retrieved(receiver: Receiver) -> None:  # noqa: F811
    """Any other number is accepted with a MessageID and gets one Retrieved report."""
    async with reporting(receiver.url) as sim:
        result = await send(sim, "17745550100")
        [report] = await reports(receiver, 1)
    assert result.accepted  # type: ignore[attr-defined]
    assert result.message_id  # type: ignore[attr-defined]
    assert report.kind == "DeliveryReportReq"
    assert report.fields["MessageID"] == result.message_id  # type: ignore[attr-defined]
    assert (report.fields["MMStatus"], report.fields["Recipient"]) == ("Retrieved", "17745550100")


async def test_duplicate_and_out_of_order_reports(receiver: Receiver) -> None:  # noqa: F811
    """Numbers ending 0004 get Retrieved, Forwarded and Retrieved again."""
    async with reporting(receiver.url) as sim:
        await send(sim, "17745550004")
        got = await reports(receiver, 3)
    assert sorted(r.fields["MMStatus"] for r in got) == ["Forwarded", "Retrieved", "Retrieved"]


@pytest.mark.parametrize(
    ("number", "code", "transient"),
    [("17745550002", 2002, False), ("17745550005", 3001, False), ("17745550008", 3001, False)],
)
async def test_scripted_refusals(number: str, code: int, transient: bool) -> None:
    """0002 is an address error; 0005 and 0008 cannot receive MMS; no report follows."""
    sim = SimulatedMmsc(None)
    result = await send(sim, number)
    assert (result.accepted, result.status_code, result.transient) == (False, code, transient)  # type: ignore[attr-defined]
    assert not sim.tasks


async def test_busy_twice_then_accepts() -> None:
    """0007 answers HTTP 500 to the first two submits, then accepts."""
    sim = SimulatedMmsc(None)
    results = [await send(sim, "17745550007") for _ in range(3)]
    assert [(r.accepted, r.transient) for r in results] == [
        (False, True),
        (False, True),
        (True, False),
    ]  # type: ignore[attr-defined]


async def test_no_report_number_schedules_nothing() -> None:
    """0006 is accepted and no report is ever scheduled."""
    sim = SimulatedMmsc("http://127.0.0.1:9/never")
    result = await send(sim, "17745550006")
    assert result.accepted  # type: ignore[attr-defined]
    assert not sim.tasks


async def test_oversized_content_is_refused() -> None:
    """Content over the simulated carrier's size limit is refused with 2004."""
    sim = SimulatedMmsc(None, max_bytes=100)
    result = await send(sim, "17745550100", content=b"x" * 500, content_type="image/jpeg")
    assert (result.accepted, result.status_code) == (False, 2004)  # type: ignore[attr-defined]


async def test_a_body_far_over_the_size_limit_is_refused_unread() -> None:
    """A streamed submit body far over the simulated carrier's limit is refused with 2004
    once it passes twice the limit and 1 MiB, without the rest being read."""
    sim = SimulatedMmsc(None, max_bytes=100)
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < 64:  # 64 MiB, never all read
            pulled += 1
            yield b"x" * 1024 * 1024

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app()), base_url="http://sim"
    ) as client:
        response = await client.post(
            "/mm7", content=endless(), headers={"content-type": "text/xml"}
        )
    assert mm7.decode_response("text/xml", response.content).status_code == 2004
    assert pulled < 8


async def test_corrupt_request_is_2007() -> None:
    """A body that is not MM7 gets a 2007 fault."""
    sim = SimulatedMmsc(None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app()), base_url="http://sim"
    ) as client:
        response = await client.post("/mm7", content=b"<nope", headers={"content-type": "text/xml"})
    assert response.status_code == 500
    assert mm7.decode_response("text/xml", response.content).status_code == 2007


async def test_reports_present_the_basic_pair(receiver: Receiver) -> None:  # noqa: F811
    """Given a pair, the simulated MMSC sends it as HTTP Basic on every report."""
    async with reporting(receiver.url, report_auth=("sim-mmsc", "sim-secret")) as sim:
        await send(sim, "17745550100")
        await reports(receiver, 1)
    [(headers, _)] = receiver.received
    assert headers["authorization"] == "Basic c2ltLW1tc2M6c2ltLXNlY3JldA=="


async def test_the_simulator_keeps_the_newest_submits_it_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`seen` holds each accepted SubmitReq's sender and recipient, the newest SEEN_MAX."""
    from mmsgate.sim import mmsc

    monkeypatch.setattr(mmsc, "SEEN_MAX", 2)
    sim = SimulatedMmsc(None)
    for number in ("447900000101", "447900000102", "447900000103"):
        await send(sim, number)
    await sim.aclose()
    assert [s.recipient for s in sim.seen.values()] == ["447900000102", "447900000103"]
    assert {s.sender for s in sim.seen.values()} == {"28444"}
