"""Who may read /metrics: a bearer token, an address of its own, loopback only by default;
over real HTTP, for `serve` as for `worker --metrics-port`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from mmsgate import errors
from mmsgate import settings as settings_mod
from mmsgate.api.app import create_app
from mmsgate.cli import app as cli_app
from mmsgate.store.db import Database
from tests.ports import free_port, free_ports

pytestmark = pytest.mark.anyio
DEADLINE_SECONDS = 30
TOKEN = "scrape-me-7f3a9c"


@pytest.fixture
def cfg(tmp_path: Path) -> settings_mod.Settings:
    """Settings of an embedded gateway in a temp dir (the access rules need no PostgreSQL)."""
    return settings_mod.load(env={"MMSGATE_DATA_DIR": str(tmp_path / "data")})


@contextlib.asynccontextmanager
async def served(cfg: settings_mod.Settings) -> AsyncIterator[str]:
    """The app under uvicorn on a free 127.0.0.1 port, its lifespan run; yields its base URL."""
    db = Database(cfg.db_url)
    await db.migrate()
    await db.close()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    cfg = dataclasses.replace(cfg, port=sock.getsockname()[1])
    config = uvicorn.Config(create_app(cfg), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not server.started:
        assert not serving.done(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{cfg.port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def test_the_token_is_required_when_set(cfg: settings_mod.Settings) -> None:
    """With metrics_token, the right bearer token reads the metrics; a wrong or missing one
    gets 401 with a Bearer challenge, even from loopback."""
    async with (
        served(dataclasses.replace(cfg, metrics_token=TOKEN)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        missing = await client.get("/metrics")
    assert right.status_code == 200
    assert "# TYPE mmsgate_jobs gauge" in right.text
    for refused in (wrong, missing):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer ")
        assert "mmsgate_" not in refused.text
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]


async def test_metrics_listen_serves_them_there_and_not_on_the_api_port(
    cfg: settings_mod.Settings,
) -> None:
    """With metrics_listen, the metrics (system state included) are on that address, behind
    the token when one is set, and the API port answers /metrics with 404."""
    port = free_port()
    own = dataclasses.replace(cfg, metrics_listen=f"127.0.0.1:{port}", metrics_token=TOKEN)
    async with served(own) as base, httpx.AsyncClient() as client:
        there = await client.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        unauthorized = await client.get(f"http://127.0.0.1:{port}/metrics")
        api_only = await client.post(f"http://127.0.0.1:{port}/ep/v1/", content=b"<request/>")
        on_api = await client.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert there.status_code == 200
    assert "# TYPE mmsgate_jobs gauge" in there.text  # the system's state, from the database
    assert "# TYPE mmsgate_accepted_total counter" in there.text  # this process's counters
    assert unauthorized.status_code == 401
    assert api_only.status_code == 404
    assert on_api.status_code == 404
    with pytest.raises(httpx.ConnectError):  # and the address is let go when the API stops
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/metrics")


async def test_by_default_only_loopback_clients_read_them(cfg: settings_mod.Settings) -> None:
    """With neither setting, a loopback client reads /metrics on the API port and any other
    client gets 403 naming the settings that open them up."""
    async with served(cfg) as base, httpx.AsyncClient(base_url=base) as client:
        local = await client.get("/metrics")
    assert local.status_code == 200
    assert "# TYPE mmsgate_jobs gauge" in local.text
    app = create_app(cfg)
    async with app.routes.router.lifespan_context(app.routes):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as remote:
            far = await remote.get("/metrics")
    assert far.status_code == 403
    assert "metrics_token" in far.text
    assert "mmsgate_" not in far.text


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"MMSGATE_METRICS_LISTEN": "9100"}, "metrics_listen"),
        ({"MMSGATE_METRICS_LISTEN": "127.0.0.1:"}, "metrics_listen"),
        ({"MMSGATE_METRICS_LISTEN": "127.0.0.1:70000"}, "metrics_listen"),
        ({"MMSGATE_METRICS_LISTEN": "no such host!:9100"}, "metrics_listen"),
        ({"MMSGATE_METRICS_LISTEN": "127.0.0.1:8080"}, "metrics_listen"),  # the API's own
        ({"MMSGATE_METRICS_TOKEN": "two words"}, "metrics_token"),
    ],
)
def test_bad_metrics_settings_are_refused_from_env(env: dict[str, str], key: str) -> None:
    """A metrics address that cannot be one, or a token no header can carry, stops the
    start with the key named."""
    with pytest.raises(errors.ConfigError, match=key):
        settings_mod.load(env=env)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("metrics_listen = 9100\n", "metrics_listen"),
        ('metrics_listen = "localhost"\n', "metrics_listen"),
        ('metrics_token = ""\n', "metrics_token"),
    ],
)
def test_bad_metrics_settings_are_refused_from_the_file(
    tmp_path: Path, toml: str, key: str
) -> None:
    """The same checks apply to the config file's keys."""
    path = tmp_path / "mmsgate.toml"
    path.write_text(toml)
    with pytest.raises(errors.ConfigError, match=key):
        settings_mod.load(path)


def test_the_file_sets_both(tmp_path: Path) -> None:
    """metrics_token and metrics_listen are read from the config file; IPv6 in brackets."""
    path = tmp_path / "mmsgate.toml"
    path.write_text(f'metrics_token = "{TOKEN}"\nmetrics_listen = "[::1]:9100"\n')
    loaded = settings_mod.load(path)
    assert loaded.metrics_token == TOKEN
    assert loaded.metrics_address == ("::1", 9100)


def test_serve_refuses_a_bad_metrics_listen(tmp_path: Path) -> None:
    """`mmsgate serve` with a bad MMSGATE_METRICS_LISTEN exits 2 naming the key."""
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--data-dir", str(tmp_path)],
        env={"MMSGATE_METRICS_LISTEN": "localhost:ninety"},
    )
    assert result.exit_code == 2
    assert "metrics_listen" in result.output


def clean_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    return {**env, "MMSGATE_DATA_DIR": str(tmp_path / "data"), **more}


def test_serve_stops_when_the_metrics_address_is_taken(tmp_path: Path) -> None:
    """`mmsgate serve` whose metrics_listen is already in use stops with an error naming
    metrics_listen, and a non-zero exit, instead of serving without its metrics."""
    api_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-m", "mmsgate", "serve", "--port", str(api_port)],
            env=clean_env(tmp_path, MMSGATE_METRICS_LISTEN=address),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"metrics_listen {address}" in done.stderr


@pytest.mark.slow
async def test_worker_metrics_port_is_behind_the_token(tmp_path: Path) -> None:
    """`mmsgate worker --metrics-port` serves the worker's counters on 127.0.0.1, to the
    token only when metrics_token is set, and stops cleanly on SIGTERM."""
    metrics_port, smsc_port = free_ports(2)
    proc = start_worker(tmp_path, metrics_port, smsc_port)
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        async with httpx.AsyncClient() as client:
            missing = await first_answer(client, url, proc)
            right = await client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer ")
        assert right.status_code == 200
        assert "# TYPE mmsgate_submits_total counter" in right.text
        assert "mmsgate_jobs" not in right.text  # the system's state is the API's to show
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_worker(tmp_path: Path, metrics_port: int, smsc_port: int) -> subprocess.Popen[str]:
    """`mmsgate worker --metrics-port` with a metrics token, its log in a file; its SMS
    route points at a port where nothing listens (it keeps trying to bind, harmlessly)."""
    config = tmp_path / "worker.toml"
    config.write_text(f'simulator_smsc = "127.0.0.1:{smsc_port}"\n')
    env = clean_env(tmp_path, MMSGATE_METRICS_TOKEN=TOKEN, MMSGATE_CONFIG=str(config))
    with (tmp_path / "worker.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mmsgate", "worker", "--metrics-port", str(metrics_port)],
            env=env,
            stderr=log,
            text=True,
        )


async def first_answer(
    client: httpx.AsyncClient, url: str, proc: subprocess.Popen[str]
) -> httpx.Response:
    """The first answer of a server that is starting in `proc`."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited"
        try:
            return await client.get(url)
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answered at {url}")
