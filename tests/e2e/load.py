"""Concurrent sendSavedMMS traffic against a server process that gets a signal mid-load."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

import httpx


def tracking_id(text: str) -> str:
    return text.split("<tracking-id>")[1].split("<")[0]


async def send_through_signal(
    client: httpx.AsyncClient,
    proc: subprocess.Popen[Any],
    *,
    key: str,
    mms_id: str,
    senders: int,
    signal_after: int,
    signum: signal.Signals,
) -> list[str]:
    """Send from `senders` concurrent clients; once `signal_after` sends were accepted, send
    `signum` to the server and keep sending until it stops answering. Returns the
    tracking-ids of every send answered `Success`."""
    accepted: list[str] = []
    signalled = False

    async def sender(n: int) -> None:
        nonlocal signalled
        for i in range(5000):
            body = (
                f"<request><action>sendSavedMMS</action><api-key>{key}</api-key><mms-id>{mms_id}</mms-id>"
                f"<to>1774555{n:02d}{i % 100:02d}</to><from>28444</from><service-id>32113</service-id>"
                "<fallback-sms-text>x</fallback-sms-text></request>"
            )
            try:
                response = await client.post("/ep/v1/", content=body)
            except httpx.TransportError:
                return  # the server is gone: whatever was in flight was never answered
            if "<status>Success</status>" not in response.text:
                return
            accepted.append(tracking_id(response.text))
            if len(accepted) >= signal_after and not signalled:
                signalled = True
                proc.send_signal(signum)

    async with asyncio.timeout(120):
        await asyncio.gather(*(sender(n) for n in range(senders)))
    assert signalled, "the load ended before the signal was sent"
    return accepted
