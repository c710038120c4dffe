"""kill -9 of `mmsgate serve` under load loses no accepted message, on both databases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.store import schema
from mmsgate.store.db import Database
from tests.e2e.load import send_through_signal
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
MMSGATE = [sys.executable, "-m", "mmsgate"]


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [*MMSGATE, *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*MMSGATE, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited during start-up"
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise AssertionError("server did not become healthy in 30 s")


async def test_sigkill_under_load_loses_no_accepted_message(db_url: str, tmp_path: Path) -> None:
    """Every tracking-id answered Success before a SIGKILL is in the database afterwards,
    with its recipient, message, history and delivery job."""
    env = {**os.environ, "MMSGATE_DATA_DIR": str(tmp_path / "data"), "MMSGATE_DATABASE_URL": db_url}
    cli(env, "migrate")
    key = json.loads(cli(env, "accounts", "create", "load", "--sender", "28444", "--json"))[
        "api_key"
    ]
    port = free_port()
    proc = start_server(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_healthy(client, proc)
            save = (
                f"<request><action>saveMMS</action><api-key>{key}</api-key><name>k</name>"
                "<slide><message-text>hi</message-text></slide></request>"
            )
            mms_id = (
                (await client.post("/ep/v1/", content=save)).text.split("<mms-id>")[1].split("<")[0]
            )
            accepted = await send_through_signal(
                client,
                proc,
                key=key,
                mms_id=mms_id,
                senders=16,
                signal_after=300,
                signum=signal.SIGKILL,
            )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(accepted) >= 200
    await assert_all_stored(db_url, accepted)


async def assert_all_stored(db_url: str, accepted: list[str]) -> None:
    db = Database(settings_mod.normalize_database_url(db_url))
    try:
        async with db.read() as conn:
            stored = set((await conn.execute(sa.select(schema.recipients.c.tracking_id))).scalars())
            jobs = set(
                (
                    await conn.execute(
                        sa.select(schema.jobs.c.tracking_id).where(schema.jobs.c.kind == "deliver")
                    )
                ).scalars()
            )
            events = set(
                (await conn.execute(sa.select(schema.recipient_events.c.tracking_id))).scalars()
            )
            orphans = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(schema.recipients)
                .where(~schema.recipients.c.message_id.in_(sa.select(schema.messages.c.id)))
            )
    finally:
        await db.close()
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} accepted messages lost"
    assert set(accepted) <= jobs
    assert set(accepted) <= events
    assert orphans == 0
