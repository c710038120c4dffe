"""The accounts commands, run in-process against an embedded data dir."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.unit.cli_helpers import embedded_db, invoke, runner


def test_create_prints_key_and_secret_as_json(data_dir: Path) -> None:
    """`accounts create --json` prints account, api_key and postback_secret, and migrates a fresh dir."""
    code, output = invoke(
        "accounts", "create", "shop", "--sender", "28444", "--service-id", "32113", "--json"
    )
    assert code == 0
    created = json.loads(output)
    assert created["account"] == "shop"
    assert len(created["api_key"]) >= 32
    assert len(created["postback_secret"]) == 64
    assert (data_dir / "mmsgate.db").exists()


def test_duplicate_name_is_refused(data_dir: Path) -> None:
    """A second account with the same name is refused with exit code 1."""
    assert invoke("accounts", "create", "shop", "--sender", "1")[0] == 0
    code, output = invoke("accounts", "create", "shop", "--sender", "1")
    assert code == 1
    assert "already exists" in output


def test_list_shows_accounts_without_keys(data_dir: Path) -> None:
    """`accounts list --json` lists settings and never a key."""
    created = json.loads(invoke("accounts", "create", "shop", "--sender", "28444", "--json")[1])
    code, output = invoke("accounts", "list", "--json")
    assert code == 0
    listed = json.loads(output)
    assert [a["account"] for a in listed] == ["shop"]
    assert created["api_key"] not in output


def test_rotate_key_and_update(data_dir: Path) -> None:
    """rotate-key prints a new key; update changes settings; unknown names exit 1."""
    invoke("accounts", "create", "shop", "--sender", "28444")
    code, output = invoke("accounts", "rotate-key", "shop")
    assert code == 0
    assert "new api-key" in output
    assert invoke("accounts", "update", "shop", "--no-api-access", "--mode", "standard")[0] == 0
    listed = json.loads(invoke("accounts", "list", "--json")[1])
    assert listed[0]["api_enabled"] is False
    assert listed[0]["mode"] == "standard"
    assert invoke("accounts", "rotate-key", "nobody")[0] == 1


def test_bad_options_are_refused(data_dir: Path) -> None:
    """A bad mode or action name is a usage error (exit 2) naming the problem."""
    code, output = invoke("accounts", "create", "x", "--sender", "1", "--mode", "turbo")
    assert code == 2
    assert "--mode" in output
    code, output = invoke("accounts", "create", "x", "--sender", "1", "--action", "fly")
    assert code == 2
    assert "unknown action" in output


def test_bad_config_file_is_reported(data_dir: Path, tmp_path: Path) -> None:
    """A config file with an unknown key stops the command with the key named."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[media]\ncolour = 'blue'\n")
    code, output = invoke("accounts", "list", "--config", str(bad))
    assert code == 2
    assert "media.colour" in output


def test_postbacks_list_and_replay(data_dir: Path) -> None:
    """Dead postbacks are listed with --failed and queued again by replay --since."""
    import asyncio
    import datetime as dt

    from mmsgate import models
    from mmsgate.pipeline.postbacks import postback_job, template_postback
    from mmsgate.store.jobs import new_job
    from mmsgate.store.schema import jobs

    created = json.loads(invoke("accounts", "create", "shop", "--sender", "1", "--json")[1])
    then = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    n003 = models.PostbackEvent(models.PostbackKind.TEMPLATE, created["id"], "N003", mms_id=5)
    # and one as earlier versions queued them (the body rendered): listed and sent as stored
    payload = {"account_id": created["id"], "body": "<ok/>", "content_type": "application/xml"}
    earlier = new_job(models.JobKind.POSTBACK, then, payload=payload)

    async def add_dead() -> None:
        db = embedded_db(data_dir)
        row = {
            **postback_job(n003, then),
            "state": "dead",
            "last_error": "HTTP 500",
        }
        async with db.write() as conn:
            await conn.execute(jobs.insert().values(row))
            await conn.execute(jobs.insert().values(earlier))
        await db.close()

    asyncio.run(add_dead())
    code, output = invoke("postbacks", "list", "--failed", "--json", "--account", "shop")
    assert code == 0
    listed = json.loads(output)
    assert [(p["state"], p["body"], p["last_error"]) for p in listed] == [
        ("dead", template_postback("N003", 5).decode(), "HTTP 500")
    ]
    assert invoke("postbacks", "replay", "--since", "2026-04-01")[1].startswith("0 postbacks")
    code, output = invoke("postbacks", "replay", "--since", "2026-02-01", "--account", "shop")
    assert (code, output.strip()) == (0, "1 postbacks queued again")
    assert json.loads(invoke("postbacks", "list", "--failed", "--json")[1]) == []
    assert invoke("postbacks", "replay", "--since", "whenever")[0] == 2


@pytest.fixture
def photo_url() -> Iterator[str]:
    """A JPEG served over HTTP on loopback from a thread (the CLI runs its own event loop)."""
    out = io.BytesIO()
    Image.effect_noise((1600, 1200), 30).convert("RGB").save(out, "JPEG", quality=90)
    body = out.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_preview_reports_each_profile_and_stores_nothing(
    data_dir: Path, tmp_path: Path, photo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mmsgate preview FILE.xml` authenticates with the file's key, prepares the message for
    every profile in use, prints the report (table or JSON) and queues nothing."""
    monkeypatch.setenv("MMSGATE_ALLOW_PRIVATE_NETWORKS", "1")
    key = json.loads(invoke("accounts", "create", "shop", "--sender", "28444", "--json")[1])[
        "api_key"
    ]
    request = tmp_path / "send.xml"
    request.write_text(
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>17745550100</to>"
        f"<from>28444</from><name>promo</name><fallback-sms-text>See</fallback-sms-text>"
        f"<slide><image><url>"
        f"{photo_url}</url></image><message-text>Hello</message-text></slide></request>"
    )
    code, output = invoke("preview", str(request), "--json")
    assert code == 0, output
    report = json.loads(output)["profiles"]["default"]
    assert report["fits"] is True
    assert report["total_bytes"] <= report["budget_bytes"]
    [part] = report["parts"]
    assert (part["kind"], part["content_type"], part["width"]) == ("image", "image/jpeg", 1600)
    code, table = invoke("preview", str(request))
    assert code == 0
    assert "default:" in table
    assert "fits" in table
    listed = json.loads(invoke("postbacks", "list", "--json")[1])
    assert listed == []


def test_preview_refuses_a_bad_key_and_a_missing_file(data_dir: Path, tmp_path: Path) -> None:
    """A wrong api-key is the Sinch error; an unreadable file exits 2."""
    request = tmp_path / "send.xml"
    request.write_text("<request><action>sendMMS</action><api-key>nope</api-key></request>")
    code, output = invoke("preview", str(request))
    assert code == 1
    assert "E104" in output
    assert invoke("preview", str(tmp_path / "missing.xml"))[0] == 2


def test_every_command_tells_an_mmsgate_error_in_one_place() -> None:
    """Any mmsgate error a command raises ends it with its label and message on stderr and
    exit 1 (2 for configuration), never a traceback."""
    import typer

    from mmsgate import codes, errors
    from mmsgate.cli_support import Commands

    raised: list[errors.MmsgateError] = [
        errors.AccountError("sender 28444 belongs to shop"),
        errors.ConfigError("media.colour: unknown key"),
        errors.ApiError(codes.ErrorCode.BAD_API_KEY, "no such key"),
    ]
    cli = typer.Typer(cls=Commands)
    sub = typer.Typer()
    cli.add_typer(sub, name="sub")

    @sub.command()
    def fails(n: int) -> None:
        raise raised[n]

    @cli.command()
    def other() -> None:
        raise raised[0]

    told = [runner.invoke(cli, ["sub", "fails", str(n)]) for n in range(3)]
    assert [
        (r.exit_code, r.exception is None or isinstance(r.exception, SystemExit)) for r in told
    ] == [
        (1, True),
        (2, True),
        (1, True),
    ]
    assert "error: sender 28444 belongs to shop" in told[0].output
    assert "configuration error: media.colour: unknown key" in told[1].output
    assert "E104: no such key" in told[2].output
    assert runner.invoke(cli, ["other"]).exit_code == 1
