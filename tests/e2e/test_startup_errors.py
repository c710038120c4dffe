"""Operator mistakes at start-up: each ends the real command quickly with a non-zero exit and
one or two lines that name the problem and the fix, before anything claims to listen."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import pg
from tests.conftest import BACKENDS
from tests.e2e.startup import assert_clean_failure, env, mmsgate
from tests.ports import HOST, free_port

pytestmark = pytest.mark.slow

DB_COMMANDS = [
    ["serve", "--port", "{free}"],
    ["worker"],
    ["migrate"],
    ["run", "--port", "{free}"],
    ["accounts", "list"],
    ["accounts", "create", "shop", "--sender", "1"],
]


def fill(command: list[str], **ports: int) -> list[str]:
    """The command with {free} (and any other named port) filled in."""
    return [a.format(free=free_port(), **ports) for a in command]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["run"], ["serve"], ["migrate"], ["accounts", "list"]])
def test_data_dir_that_is_a_file(tmp_path: Path, command: list[str]) -> None:
    """A data dir that is a file is named, with the options that choose another."""
    (tmp_path / "data").write_text("")
    result = mmsgate(*command, cwd=tmp_path, environment=env(MMSGATE_DATA_DIR="data"))
    assert_clean_failure(result, "data dir", "a file", "--data-dir")


@pytest.mark.parametrize("command", [["run"], ["worker"], ["accounts", "show", "x"]])
def test_data_dir_that_cannot_be_created(tmp_path: Path, command: list[str]) -> None:
    """A data dir under a file (so it cannot be created or written) is named as such."""
    (tmp_path / "file").write_text("")
    result = mmsgate(*command, cwd=tmp_path, environment=env(MMSGATE_DATA_DIR="file/data"))
    assert_clean_failure(result, "data dir", "cannot be written", "Not a directory")


@pytest.mark.parametrize(
    ("command", "port"), [(["run"], "99999"), (["serve"], "0"), (["carrier-sim"], "-1")]
)
def test_port_out_of_range(tmp_path: Path, command: list[str], port: str) -> None:
    """--port outside 1-65535 is refused (exit 2) instead of binding some other port."""
    result = mmsgate(*command, "--port", port, cwd=tmp_path, environment=env())
    assert result.returncode == 2
    assert_clean_failure(result, f"port {port}", "1 to 65535")


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--port", "{port}"],
        ["serve", "--port", "{port}"],
        ["run", "--port", "{free}", "--sim-mm7-port", "{port}"],
        ["run", "--port", "{free}", "--sim-smpp-port", "{port}"],
        ["carrier-sim", "--port", "{port}", "--smpp-port", "0"],
        ["carrier-sim", "--port", "{free}", "--smpp-port", "{port}"],
        ["worker", "--metrics-port", "{port}"],
    ],
)
def test_port_in_use(tmp_path: Path, taken_port: int, command: list[str]) -> None:
    """A port already taken is named, with what to do, and nothing is left behind."""
    result = mmsgate(*fill(command, port=taken_port), cwd=tmp_path, environment=env())
    assert_clean_failure(result, f"127.0.0.1:{taken_port}", "already in use", "another port")
    if command[0] == "run":
        # Refused before the database was touched: no demo account spent on a failed start.
        assert not (tmp_path / "mmsgate-data" / "mmsgate.db").exists()


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_database_url_with_an_unknown_scheme(tmp_path: Path, command: list[str]) -> None:
    """A database URL mmsgate has no driver for is a configuration error naming the scheme."""
    environment = env(MMSGATE_DATABASE_URL="mysql://db.example/mmsgate")
    result = mmsgate(*fill(command), cwd=tmp_path, environment=environment)
    assert result.returncode == 2
    assert_clean_failure(result, "database url", "mysql")


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_database_nobody_listens_on(tmp_path: Path, command: list[str]) -> None:
    """A PostgreSQL address where nothing listens is reported with MMSGATE_DATABASE_URL."""
    url = f"postgresql://mmsgate:secret@127.0.0.1:{free_port()}/mmsgate"
    result = mmsgate(*fill(command), cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
    assert_clean_failure(result, "cannot use the database", "MMSGATE_DATABASE_URL")
    assert "secret" not in result.stderr  # the password is never printed


if "postgresql" in BACKENDS:

    @pytest.fixture(scope="module")
    def password_role(pg_admin_url: str) -> str:
        """A role that must log in with the password `right` (the test server trusts others)."""

        async def go() -> None:
            conn = await asyncpg.connect(pg_admin_url + "/postgres")
            try:
                await conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'right'")
                hba = Path(await conn.fetchval("SHOW hba_file"))
                rule = "host all pwuser 127.0.0.1/32 scram-sha-256\n"
                hba.write_text(rule + hba.read_text())  # noqa: ASYNC240 - set-up, nothing else runs
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:  # until the reload took effect
                try:
                    wrong = await asyncpg.connect(pg_admin_url.replace("postgres@", "pwuser:x@"))
                except asyncpg.InvalidPasswordError:
                    return
                await wrong.close()
                await asyncio.sleep(0.05)
            raise AssertionError("the password rule was not loaded")

        asyncio.run(go())
        return pg_admin_url.replace("postgres@", "pwuser:wrong@") + "/postgres"

    @pytest.mark.parametrize("command", DB_COMMANDS)
    def test_database_wrong_password(
        tmp_path: Path, password_role: str, command: list[str]
    ) -> None:
        """A wrong password is reported as PostgreSQL words it, without the password."""
        result = mmsgate(
            *fill(command), cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=password_role)
        )
        assert_clean_failure(result, "password authentication failed", "MMSGATE_DATABASE_URL")
        assert "wrong" not in result.stderr

    @pytest.mark.parametrize("command", DB_COMMANDS)
    def test_database_that_does_not_exist(
        tmp_path: Path, pg_admin_url: str, command: list[str]
    ) -> None:
        """A PostgreSQL that refuses the connection (no such database) says why."""
        url = pg_admin_url + "/no_such_database"
        result = mmsgate(*fill(command), cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
        assert_clean_failure(result, "no_such_database", "does not exist")

    @pytest.mark.parametrize(
        "command",
        [
            ["serve", "--port", "{free}"],
            ["worker"],
            ["accounts", "list"],
            ["accounts", "show", "x"],
        ],
    )
    def test_database_not_migrated(tmp_path: Path, pg_admin_url: str, command: list[str]) -> None:
        """A database without mmsgate's schema is refused with `mmsgate migrate` as the fix;
        after the migration the same database is accepted."""
        name = f"bare_{command[-1]}_{free_port()}"
        url = pg.create_database(pg_admin_url, name)
        result = mmsgate(*fill(command), cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
        assert_clean_failure(result, "no mmsgate schema", "mmsgate migrate")
        migrated = mmsgate("migrate", cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
        assert migrated.returncode == 0, migrated.stderr
        assert "applied schema revisions 0001" in migrated.stdout
        again = mmsgate("migrate", cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
        assert "already up to date" in again.stdout

    def test_database_at_an_older_schema(
        tmp_path: Path, pg_admin_url: str, pg_template: str
    ) -> None:
        """A database migrated by an older mmsgate is refused by serve with the revision it
        is at and `mmsgate migrate` as the fix."""
        url = pg.create_database(pg_admin_url, f"old_{free_port()}", pg_template)

        async def make_old() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("UPDATE alembic_version SET version_num = '0007'")
            finally:
                await conn.close()

        asyncio.run(make_old())
        command = fill(["serve", "--port", "{free}"])
        result = mmsgate(*command, cwd=tmp_path, environment=env(MMSGATE_DATABASE_URL=url))
        assert_clean_failure(result, "schema revision 0007", "run `mmsgate migrate`")
