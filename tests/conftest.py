"""Shared fixtures: both databases (SQLite and a real PostgreSQL), the app, accounts, media."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from mmsgate import settings as settings_mod
from mmsgate.api.app import build_services, create_app
from mmsgate.store import accounts
from mmsgate.store.db import Database
from tests import pg


@pytest.fixture(autouse=True)
def _structlog_defaults() -> None:
    """Each test starts with structlog as a fresh process has it: a command run in-process
    by an earlier test leaves its logging configured (level filter, stream) behind."""
    structlog.reset_defaults()


BACKENDS = os.environ.get("MMSGATE_TEST_BACKENDS", "sqlite,postgresql").split(",")
_db_counter = itertools.count()
# The Basic pair the simulator route accepts on /mm7 in tests (simulator_inbound_*).
SIM_AUTH = ("sim-mmsc", "sim-secret")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with pg.server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    """A migrated database that each test copies (much faster than migrating each time)."""
    import asyncio

    url = pg.create_database(pg_admin_url, "mmsgate_template")

    async def migrate() -> None:
        db = Database(settings_mod.normalize_database_url(url))
        await db.migrate()
        await db.close()

    asyncio.run(migrate())
    return "mmsgate_template"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mmsgate.db'}"
    admin = request.getfixturevalue("pg_admin_url")
    template = request.getfixturevalue("pg_template")
    return pg.create_database(admin, f"t{os.getpid()}_{next(_db_counter)}", template)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> settings_mod.Settings:
    """Settings for one test; `@pytest.mark.media(...)`/`@pytest.mark.config(...)` adjust them."""
    cfg = settings_mod.load(
        env={
            "MMSGATE_DATA_DIR": str(tmp_path / "data"),
            "MMSGATE_DATABASE_URL": db_url,
            "MMSGATE_ALLOW_PRIVATE_NETWORKS": "1",
            "MMSGATE_SIMULATOR_INBOUND_USERNAME": SIM_AUTH[0],
            "MMSGATE_SIMULATOR_INBOUND_PASSWORD": SIM_AUTH[1],
        }
    )
    media = dataclasses.replace(cfg.media, total_timeout=5.0)
    if (marker := request.node.get_closest_marker("media")) is not None:
        media = dataclasses.replace(media, **marker.kwargs)
    cfg = dataclasses.replace(cfg, media=media)
    if (marker := request.node.get_closest_marker("config")) is not None:
        cfg = dataclasses.replace(cfg, **marker.kwargs)
    return cfg


@dataclasses.dataclass
class Gateway:
    """The app in-process, its services, and an account to call it with."""

    client: httpx.AsyncClient
    services: Any
    api_key: str
    account: Any

    async def xml(self, body: str | bytes, **kwargs: Any) -> httpx.Response:
        data = body.encode() if isinstance(body, str) else body
        return await self.client.post("/ep/v1/", content=data, **kwargs)

    async def mm7(
        self, body: bytes, content_type: str = "text/xml", **kwargs: Any
    ) -> httpx.Response:
        """POST /mm7 as the simulated MMSC (its Basic pair) unless `auth` says otherwise."""
        kwargs.setdefault("auth", SIM_AUTH)
        headers = {"Content-Type": content_type}
        return await self.client.post("/mm7", content=body, headers=headers, **kwargs)


@contextlib.asynccontextmanager
async def open_gateway(settings: settings_mod.Settings) -> AsyncIterator[Gateway]:
    """The app in-process on a fresh database with the account `acme`, started and stopped
    as a server would be."""
    db = Database(settings.db_url)
    await db.migrate()
    created = await accounts.create(db, "acme", senders=["28444", "12345"], service_ids=["32113"])
    assert created is not None
    services = build_services(settings, db)
    app = create_app(settings, services)
    async with app.routes.router.lifespan_context(app.routes):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://mmsgate.test") as client:
            yield Gateway(client, services, created.api_key, created.account)


@pytest.fixture
async def gateway(settings: settings_mod.Settings) -> AsyncIterator[Gateway]:
    async with open_gateway(settings) as opened:
        yield opened


@dataclasses.dataclass
class MediaServer:
    """A real HTTP server on 127.0.0.1 serving scripted files; counts requests per path."""

    base: str
    files: dict[str, tuple[str, bytes, dict[str, str]]]
    hits: dict[str, int]
    # Requests per path answered 304: revalidations of a cached copy, not downloads.
    revalidated: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, path: str, content_type: str, data: bytes, **headers: str) -> str:
        self.files[path] = (content_type, data, headers)
        return self.base + path


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    files: dict[str, tuple[str, bytes, dict[str, str]]] = {}
    hits: dict[str, int] = {}
    revalidated: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] = hits.get(self.path, 0) + 1
            found = files.get(self.path)
            if found is None:
                self.send_error(404)
                return
            content_type, data, headers = found
            etag = headers.get("ETag")
            if etag and self.headers.get("If-None-Match") == etag:
                revalidated[self.path] = revalidated.get(self.path, 0) + 1
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield MediaServer(f"http://127.0.0.1:{server.server_address[1]}", files, hits, revalidated)
    finally:
        server.shutdown()
        server.server_close()
