"""Faults in the delivery path, on SQLite and PostgreSQL: two workers share the queue; one
is SIGKILLed mid-delivery and the simulated MMSC is SIGKILLed mid-response, then both are
restarted. Every accepted recipient ends delivered, each state is entered exactly once, and
each state's postback is queued exactly once; the POSTs themselves are at-least-once, so
the receiver counts repeats (a worker killed between POST and recording it sends again)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.pipeline.postbacks import body_of
from mmsgate.store import schema
from mmsgate.store.db import Database
from tests.e2e.test_kill9 import cli, wait_healthy
from tests.pipeline.test_postbacks import Receiver, receiver  # noqa: F401 - fixture
from tests.ports import free_ports

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
MMSGATE = [sys.executable, "-m", "mmsgate"]
COUNT = 300


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*MMSGATE, *args], env=env, stdout=out, stderr=out)


def numbers() -> list[str]:
    """Numbers whose endings script nothing special: each should end delivered."""
    return [f"1774{300 + n // 1000}{n % 1000:03d}1" for n in range(COUNT)]


def postbacks_by_recipient(received: list[tuple[dict[str, str], bytes]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = collections.defaultdict(list)
    for _headers, body in received:
        text = body.decode()
        tracking = re.search(r"<tracking-id>([^<]+)</tracking-id>", text)
        code = re.search(r"<code>(\w+)</code>", text)
        if tracking and code:
            found[tracking.group(1)].append(code.group(1))
    return found


async def test_killed_worker_and_mmsc_lose_nothing_and_repeat_no_state(
    db_url: str,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    """SIGKILL a worker and the MMSC mid-flight, restart them: all recipients delivered,
    one event and one queued postback per state; repeated POSTs counted."""
    sim_port, api_port = free_ports(2)
    config = tmp_path / "mmsgate.toml"
    config.write_text(
        f'simulator_url = "http://127.0.0.1:{sim_port}/mm7"\nworker_lease_seconds = 3.0\n'
        '[[routes]]\nname = "sim"\nkind = "simulator"\ndefault = true\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env |= {
        "MMSGATE_DATA_DIR": str(tmp_path / "data"),
        "MMSGATE_DATABASE_URL": db_url,
        "MMSGATE_CONFIG": str(config),
        "MMSGATE_ALLOW_PRIVATE_NETWORKS": "1",
        # The pair carrier-sim presents on /mm7 and the sim route accepts.
        "MMSGATE_SIMULATOR_INBOUND_USERNAME": "sim-mmsc",
        "MMSGATE_SIMULATOR_INBOUND_PASSWORD": "sim-secret",
    }
    cli(env, "migrate")
    created = cli(env, "accounts", "create", "shop", "--sender", "28444", "--postback-url",
                  receiver.url, "--json")  # fmt: skip
    key = json.loads(created)["api_key"]
    log = tmp_path / "processes.log"
    sim_args = ("carrier-sim", "--port", str(sim_port), "--report-url",
                f"http://127.0.0.1:{api_port}/mm7", "--journal", str(tmp_path / "sim.journal"))  # fmt: skip
    sim = start(env, log, *sim_args)
    serve = start(env, log, "serve", "--port", str(api_port), "--log-level", "warning")
    doomed = start(env, log, "worker", "--log-level", "warning")
    steady = start(env, log, "worker", "--log-level", "warning")
    procs = [sim, serve, doomed, steady]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as client:
            await wait_healthy(client, serve)
            save = (
                f"<request><action>saveMMS</action><api-key>{key}</api-key><name>f</name>"
                "<slide><message-text>Sale starts now</message-text></slide></request>"
            )
            mms_id = (await client.post("/ep/v1/", content=save)).text.split("<mms-id>")[1]
            mms_id = mms_id.split("<")[0]
            accepted: list[str] = []
            to = numbers()
            for start_at in range(0, COUNT, 100):
                body = (
                    f"<request><action>sendSavedMMS</action><api-key>{key}</api-key>"
                    f"<mms-id>{mms_id}</mms-id><to>{','.join(to[start_at : start_at + 100])}</to>"
                    "<from>28444</from><fallback-sms-text>See</fallback-sms-text></request>"
                )
                answer = await client.post("/ep/v1/", content=body)
                accepted += re.findall(r"<tracking-id>([^<]+)</tracking-id>", answer.text)
            assert len(accepted) == COUNT, answer.text
            await until(lambda: sum(codes.count("N101") for codes in
                                    postbacks_by_recipient(receiver.received).values()) >= 40)  # fmt: skip
            doomed.send_signal(signal.SIGKILL)
            sim.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            sim.wait(timeout=10)
            await asyncio.sleep(1.0)
            procs += [
                start(env, log, *sim_args),
                start(env, log, "worker", "--log-level", "warning"),
            ]
            await until(
                lambda: all(
                    "N102" in postbacks_by_recipient(receiver.received).get(t, []) for t in accepted
                ),
                limit=150,
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    received = postbacks_by_recipient(receiver.received)
    repeats = sum(len(codes) - len(set(codes)) for codes in received.values())
    print(f"\n{len(accepted)} delivered; {repeats} postback POSTs repeated (at-least-once)")
    for tracking_id in accepted:
        assert set(received[tracking_id]) == {"N101", "N102"}, received[tracking_id]
    await assert_each_state_once(db_url, accepted)


async def until(condition: object, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def assert_each_state_once(db_url: str, accepted: list[str]) -> None:
    """In the database: every recipient delivered, history queued → submitted → delivered
    with no state twice, and exactly one N101 and one N102 postback job each."""
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        async with db.read() as conn:
            states = dict(
                (await conn.execute(
                    sa.select(schema.recipients.c.tracking_id, schema.recipients.c.state)
                )).all()
            )  # fmt: skip
            events = (
                await conn.execute(
                    sa.select(
                        schema.recipient_events.c.tracking_id, schema.recipient_events.c.state
                    ).order_by(schema.recipient_events.c.id)
                )
            ).all()
            payloads = (
                await conn.scalars(
                    sa.select(schema.jobs.c.payload).where(schema.jobs.c.kind == "postback")
                )
            ).all()
    finally:
        await db.close()
    assert all(states[t] == "delivered" for t in accepted)
    history: dict[str, list[str]] = collections.defaultdict(list)
    for tracking_id, state in events:
        history[tracking_id].append(state)
    for tracking_id in accepted:
        assert history[tracking_id] == ["queued", "submitted", "delivered"]
    bodies = [body_of(p)[0].decode() for p in payloads]
    queued = collections.Counter(
        (re.search(r"<tracking-id>([^<]+)<", b).group(1),  # type: ignore[union-attr]
         re.search(r"<code>(\w+)<", b).group(1))  # type: ignore[union-attr]
        for b in bodies if "<tracking-id>" in b
    )  # fmt: skip
    assert all(queued[(t, c)] == 1 for t in accepted for c in ("N101", "N102"))
