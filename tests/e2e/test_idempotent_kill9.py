"""kill -9 of `mmsgate serve` while keyed sends are in flight, then every request retried
with its Idempotency-Key against a restarted server, on both databases: each key makes
exactly one message, and every answer a client heard before the kill is the replay's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.store import schema
from mmsgate.store.db import Database
from tests.e2e.test_kill9 import cli, start_server, wait_healthy
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SEED = 3  # fixes the mix of requests and when the kill comes
REQUESTS = 240  # keyed requests in all
CONCURRENCY = 16  # in flight at once
BOUND = 60  # seconds each phase may take


@dataclasses.dataclass(frozen=True)
class Keyed:
    """One request and its key."""

    key: str
    action: str
    body: str


def requests_for(rng: random.Random, api_key: str, mms_id: str) -> list[Keyed]:
    """REQUESTS keyed requests: sendMMS, sendSavedMMS and saveMMS mixed, each its own body."""
    made = []
    for n in range(REQUESTS):
        action = rng.choice(["sendMMS", "sendSavedMMS", "sendSavedMMS", "saveMMS"])
        to = f"1774555{rng.randrange(10**4):04d}"
        head = f"<request><action>{action}</action><api-key>{api_key}</api-key>"
        if action == "saveMMS":
            rest = f"<name>t{n}</name><slide><message-text>saved {n}</message-text></slide>"
        elif action == "sendMMS":
            rest = (
                f"<to>{to}</to><from>28444</from><name>n{n}</name><fallback-sms-text>x"
                f"</fallback-sms-text><slide><message-text>inline {n}</message-text></slide>"
            )
        else:
            rest = (
                f"<mms-id>{mms_id}</mms-id><to>{to}</to><from>28444</from>"
                "<fallback-sms-text>x</fallback-sms-text>"
            )
        made.append(Keyed(f"key-{SEED}-{n}", action, f"{head}{rest}</request>"))
    return made


async def send_all(
    base: str,
    todo: list[Keyed],
    answered: dict[str, bytes],
    on_answer: Callable[[], bool] | None = None,
) -> None:
    """Send `todo` from CONCURRENCY clients, each request with its key, recording each
    answer heard; once `on_answer` says it killed the server, answers still arriving are
    not heard (they were in the sockets' buffers: a client that had timed out would never
    read them, and one whose server was killed between commit and answer gets none)."""
    queue = list(reversed(todo))
    killed = asyncio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            while queue:
                req = queue.pop()
                try:
                    response = await http.post(
                        "/ep/v1/", content=req.body, headers={"Idempotency-Key": req.key}
                    )
                except httpx.TransportError:
                    return  # the server is gone: this request was never answered
                if killed.is_set():
                    return  # read after the kill: a client that timed out never hears it
                answered[req.key] = response.content
                if on_answer is not None and on_answer():
                    killed.set()

    async with asyncio.timeout(BOUND):
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))


async def keys_stored(db_url: str) -> set[str]:
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.select(schema.idempotency_keys.c.key))
            return set(rows.scalars())
    finally:
        await db.close()


async def test_a_retry_after_kill_9_makes_each_key_one_message(db_url: str, tmp_path: Path) -> None:
    """SIGKILL at a random moment (seeded) among keyed sends in flight, restart on the same
    data, retry every request with its key: each key is exactly one message (or template),
    and each answer heard before the kill comes back byte for byte."""
    rng = random.Random(SEED)
    env = {**os.environ, "MMSGATE_DATA_DIR": str(tmp_path / "data"), "MMSGATE_DATABASE_URL": db_url}
    cli(env, "migrate")
    created = json.loads(cli(env, "accounts", "create", "k9", "--sender", "28444", "--json"))
    api_key = created["api_key"]
    kill_after = rng.randrange(30, 150)
    before: dict[str, bytes] = {}
    port = free_port()
    proc = start_server(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await wait_healthy(http, proc)
            save = (
                f"<request><action>saveMMS</action><api-key>{api_key}</api-key><name>k</name>"
                "<slide><message-text>hi</message-text></slide></request>"
            )
            mms_id = (await http.post("/ep/v1/", content=save)).text.split("<mms-id>")[1]
        todo = requests_for(rng, api_key, mms_id.split("<")[0])

        def maybe_kill() -> bool:
            if len(before) < kill_after:
                return False
            proc.send_signal(signal.SIGKILL)
            return True

        await send_all(base, todo, before, maybe_kill)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(before) == kill_after
    assert all(b"<status>Success</status>" in answer for answer in before.values())
    stored_at_kill = await keys_stored(db_url)
    assert set(before) <= stored_at_kill  # every answer heard was committed first
    unheard = stored_at_kill - set(before)  # committed, the client killed before its answer

    after: dict[str, bytes] = {}
    port = free_port()
    proc = start_server(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_healthy(http, proc)
        started = time.monotonic()
        await send_all(f"http://127.0.0.1:{port}", todo, after)
        assert time.monotonic() - started < BOUND
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(after) == REQUESTS
    assert all(b"<status>Success</status>" in answer for answer in after.values())
    assert {k: after[k] for k in before} == before
    await assert_one_each(db_url, todo, after)
    print(f"kill after {len(before)} answers; {len(unheard)} committed but never answered")


async def assert_one_each(db_url: str, todo: list[Keyed], answers: dict[str, bytes]) -> None:
    """Each key is one row, each send one message with one recipient (the tracking-id its
    answer gives), each saveMMS one template: no request was accepted twice."""
    sends = [r for r in todo if r.action != "saveMMS"]
    saves = [r for r in todo if r.action == "saveMMS"]
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        async with db.read() as conn:
            keys = await conn.scalar(
                sa.select(sa.func.count()).select_from(schema.idempotency_keys)
            )
            messages = await conn.scalar(sa.select(sa.func.count()).select_from(schema.messages))
            tracking = set(
                (await conn.execute(sa.select(schema.recipients.c.tracking_id))).scalars()
            )
            saved = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(schema.templates)
                .where(schema.templates.c.kind == "saved")
            )
    finally:
        await db.close()
    assert keys == REQUESTS
    assert messages == len(sends)
    assert saved == len(saves) + 1  # and the template the sends use
    answered = {answers[r.key].split(b"<tracking-id>")[1].split(b"<")[0].decode() for r in sends}
    assert answered == tracking
