"""Running `mmsgate` commands in-process for the command-line tests, against the embedded
data dir the `data_dir` fixture (tests/unit/conftest.py) points MMSGATE_DATA_DIR at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from mmsgate import settings
from mmsgate.cli import app
from mmsgate.store.db import Database

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    """The exit code and the output (stdout and stderr) of `mmsgate ARGS`."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def json_of(*args: str) -> Any:
    """What a `--json` command printed on stdout (logs go to stderr)."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def create(name: str, *options: str) -> dict[str, Any]:
    created: dict[str, Any] = json_of("accounts", "create", name, *options)
    return created


def show(name: str) -> dict[str, Any]:
    shown: dict[str, Any] = json_of("accounts", "show", name)
    return shown


def embedded_db(data_dir: Path) -> Database:
    """The database of the embedded data dir, opened as the commands open it."""
    return Database(settings.load(env={"MMSGATE_DATA_DIR": str(data_dir)}).db_url)


def refused_on_create_and_update(option: str, bad: str, good: str, code: int, *said: str) -> None:
    """`accounts create shop OPTION BAD` exits `code` with each of `said` in its output and
    creates nothing; then, with shop created with OPTION GOOD, `accounts update shop OPTION
    BAD` exits the same way (the caller checks that GOOD stayed)."""
    exit_code, output = invoke("accounts", "create", "shop", "--sender", "1", option, bad)
    assert exit_code == code, output
    assert all(words in output for words in said), output
    assert json_of("accounts", "list") == []
    create("shop", "--sender", "1", option, good)
    exit_code, output = invoke("accounts", "update", "shop", option, bad)
    assert exit_code == code, output
    assert all(words in output for words in said), output
