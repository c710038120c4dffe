"""What an operator reads: `--log-format json` makes every stderr line one JSON object
(uvicorn's too), each API request gets one `api.request` line with account, action,
tracking-id, code and latency, and the console format stays readable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmsgate import errors
from mmsgate import settings as settings_mod
from tests.e2e.test_new_user import read_key, wait_up
from tests.ports import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ACCOUNT = ["accounts", "create", "shop", "--sender", "28444", "--service-id", "32113", "--json"]
TEXT_ONLY = """<request>
    <action>sendMMS</action><api-key>{key}</api-key><to>{to}</to><from>28444</from>
    <name>Logs</name><message-subject>Hi</message-subject><service-id>32113</service-id>
    <fallback-sms-text>Your MMS is waiting</fallback-sms-text>
    <slide><message-text>Hello</message-text></slide>
</request>"""


def environment(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    return {**env, **more}


def start(cwd: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The command with its stdout and stderr in files of `cwd` (the child keeps them open),
    in a process group of its own: `end` stops its API processes with it."""
    with (cwd / "stdout.txt").open("w") as out, (cwd / "stderr.txt").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "mmsgate", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def end(proc: subprocess.Popen[str]) -> None:
    """Kill whatever is left of the command's process group (after a failed test)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, and a clean exit (uvicorn re-raises the signal after its graceful stop)."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)


async def exercise(base: str, key: str) -> str:
    """A send, a refused request, a status read, unauthenticated MM7 and a request uvicorn itself
    refuses (it logs that at warning); returns the send's tracking-id."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await wait_up(client)
        sent = await client.post("/ep/v1/", content=TEXT_ONLY.format(key=key, to="12399471613"))
        assert "<status>Success</status>" in sent.text, sent.text
        tracking_id = sent.text.split("<tracking-id>")[1].split("<")[0]
        refused = await client.post("/ep/v1/", content=TEXT_ONLY.format(key="wrong", to="1"))
        assert "E104" in refused.text
        status = await client.get(f"/v1/messages/{tracking_id}", headers={"x-api-key": key})
        assert status.status_code == 200
        assert (await client.post("/mm7", content=b"not xml")).status_code == 401
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"NOT HTTP\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    return tracking_id


def create_account(data: Path) -> str:
    """A new account `shop` in the data dir; its API key."""
    created = subprocess.run(
        [sys.executable, "-m", "mmsgate", *ACCOUNT],
        env=environment(MMSGATE_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(created.stdout)["api_key"])


def request_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request lines of the clients' requests (not the simulator's reports to /mm7)."""
    return [
        line
        for line in lines
        if line["event"] == "api.request" and (line["path"] != "/mm7" or line["code"] != "Success")
    ]


async def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    """`mmsgate run --log-format json`: every stderr line parses as JSON with timestamp,
    level and event (start-up notices, the simulator, the worker and uvicorn's own lines
    included), without colour codes; each API request has its line."""
    port = free_port()
    proc = start(tmp_path, ["run", "--port", str(port), "--log-format", "json"], environment())
    try:
        key = read_key(tmp_path / "stdout.txt")
        tracking_id = await exercise(f"http://127.0.0.1:{port}", key)
        stop(proc)
    finally:
        end(proc)
    text = (tmp_path / "stderr.txt").read_text()
    assert "\x1b[" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert {"timestamp", "level", "event"} <= line.keys(), line
    events = {line["event"] for line in lines}
    assert {"api.listening", "carrier.simulated", "worker.started"} <= events
    assert any(line.get("logger") == "uvicorn.error" for line in lines)  # a stdlib logger's
    sent, refused, status, mm7 = request_lines(lines)
    assert sent["account"] == "demo"
    assert sent["action"] == "sendMMS"
    assert sent["tracking_id"] == tracking_id
    assert sent["code"] == "Success"
    assert sent["status"] == 200
    assert isinstance(sent["ms"], int | float)
    assert (refused["code"], refused["account"], refused["action"]) == ("E104", None, "sendMMS")
    assert "API key" in refused["info"]
    assert (status["account"], status["tracking_id"], status["code"]) == (
        "demo",
        tracking_id,
        "Success",
    )
    assert (mm7["path"], mm7["status"], mm7["code"]) == ("/mm7", 401, "4001")


async def test_console_logs_stay_readable(tmp_path: Path) -> None:
    """`mmsgate serve` by default: key=value lines, uvicorn's in the same shape, no JSON,
    no colour codes when stderr is not a terminal."""
    data = tmp_path / "data"
    key = create_account(data)
    port = free_port()
    env = environment(MMSGATE_DATA_DIR=str(data))
    proc = start(tmp_path, ["serve", "--port", str(port)], env)
    try:
        tracking_id = await exercise(f"http://127.0.0.1:{port}", key)
        stop(proc)
    finally:
        end(proc)
    text = (tmp_path / "stderr.txt").read_text()
    assert "\x1b[" not in text
    assert not any(line.startswith("{") for line in text.splitlines())
    [sent] = [line for line in text.splitlines() if "action=sendMMS code=Success" in line]
    assert "api.request" in sent
    assert "account=shop" in sent
    assert f"tracking_id={tracking_id}" in sent
    assert " ms=" in sent
    [uvicorn_line] = [line for line in text.splitlines() if "[uvicorn.error]" in line]
    assert "[warning" in uvicorn_line
    assert "Invalid HTTP request" in uvicorn_line


def test_the_format_comes_from_env_or_file(tmp_path: Path) -> None:
    """log_format is read from MMSGATE_LOG_FORMAT and the config file; other values are
    refused naming the key."""
    assert settings_mod.load(env={"MMSGATE_LOG_FORMAT": "json"}).log_format == "json"
    path = tmp_path / "mmsgate.toml"
    path.write_text('log_format = "json"\n')
    assert settings_mod.load(path).log_format is settings_mod.LogFormat.JSON
    path.write_text('log_format = "xml"\n')
    with pytest.raises(errors.ConfigError, match="log_format"):
        settings_mod.load(path)
    with pytest.raises(errors.ConfigError, match="MMSGATE_LOG_FORMAT"):
        settings_mod.load(env={"MMSGATE_LOG_FORMAT": "pretty"})


async def test_serve_with_processes_logs_json_too(tmp_path: Path) -> None:
    """`serve --workers 2` with MMSGATE_LOG_FORMAT=json: each API process's lines are JSON."""
    data = tmp_path / "data"
    key = create_account(data)
    port = free_port()
    env = environment(MMSGATE_DATA_DIR=str(data), MMSGATE_LOG_FORMAT="json")
    proc = start(tmp_path, ["serve", "--port", str(port), "--workers", "2"], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await wait_up(client)
            for _ in range(4):
                await client.post("/ep/v1/", content=TEXT_ONLY.format(key=key, to="12399471613"))
        await until_logged(tmp_path / "stderr.txt", 4)
        stop(proc)
    finally:
        end(proc)
    lines = [json.loads(line) for line in (tmp_path / "stderr.txt").read_text().splitlines()]
    assert [line["code"] for line in request_lines(lines)] == ["Success"] * 4


def request_count(path: Path) -> int:
    return path.read_text().count('"api.request"')


async def until_logged(path: Path, count: int) -> None:
    """Wait until `count` api.request lines are in the file (the processes write them)."""
    deadline = time.monotonic() + 30
    while request_count(path) < count:
        assert time.monotonic() < deadline, "the request lines were not written"
        await asyncio.sleep(0.05)
