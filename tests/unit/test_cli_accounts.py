"""The accounts commands (show, rotate-secret, delete, list, update's checks) and the
command line's own checks, run in-process against an embedded data dir."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mmsgate.cli import app
from mmsgate.store.schema import jobs, messages, recipient_events, recipients, templates
from tests.e2e.startup import env
from tests.unit.cli_helpers import (
    create,
    embedded_db,
    invoke,
    json_of,
    refused_on_create_and_update,
    runner,
    show,
)

SETTINGS = {
    "account", "id", "senders", "service_ids", "mode", "postback_url", "allowed_ips",
    "allowed_actions", "max_rps", "daily_limit", "mms_expiry_hours", "api_enabled",
    "created_at", "postback_format",
}  # fmt: skip


def test_show_prints_every_setting_and_the_secret(data_dir: Path) -> None:
    """`accounts show NAME --json` has every setting and the secret as `postback_secret`;
    without --json a table of the same; an unknown name exits 1."""
    created = create(
        "shop", "--sender", "28444", "--service-id", "32113", "--allow-ip", "192.0.2.0/24",
        "--action", "sendMMS", "--max-rps", "5", "--daily-limit", "100",
        "--mms-expiry-hours", "12", "--postback-url", "https://shop.example/hook",
    )  # fmt: skip
    shown = show("shop")
    assert set(shown) == SETTINGS | {"postback_secret"}
    assert shown["postback_secret"] == created["postback_secret"]
    assert (shown["senders"], shown["service_ids"]) == (["28444"], ["32113"])
    assert (shown["allowed_ips"], shown["allowed_actions"]) == (["192.0.2.0/24"], ["sendMMS"])
    assert (shown["max_rps"], shown["daily_limit"], shown["mms_expiry_hours"]) == (5.0, 100, 12)
    assert created["api_key"] not in json.dumps(shown)
    code, table = invoke("accounts", "show", "shop")
    assert code == 0
    assert "https://shop.example/hook" in table
    assert created["postback_secret"] in table
    code, output = invoke("accounts", "show", "nobody")
    assert code == 1
    assert "no account named 'nobody'" in output


def test_list_json_has_every_setting(data_dir: Path) -> None:
    """`accounts list --json` gives every setting of each account, never a key or secret."""
    created = create("shop", "--sender", "1", "--allow-ip", "10.0.0.0/8")
    [listed] = json_of("accounts", "list")
    assert set(listed) == SETTINGS
    assert listed["allowed_ips"] == ["10.0.0.0/8"]
    assert created["postback_secret"] not in json.dumps(listed)


def test_rotate_secret(data_dir: Path) -> None:
    """rotate-secret prints a new secret, which `show` then has; unknown names exit 1."""
    before = create("shop", "--sender", "1")["postback_secret"]
    code, output = invoke("accounts", "rotate-secret", "shop")
    assert code == 0
    after = show("shop")["postback_secret"]
    assert after != before
    assert after in output
    assert invoke("accounts", "rotate-secret", "nobody")[0] == 1


@pytest.mark.parametrize("value", ["10.0.0.300", "example.com", "10.0.0.0/33", ""])
def test_allow_ip_takes_only_cidrs(data_dir: Path, value: str) -> None:
    """A bad --allow-ip is refused (exit 2) on create and update; nothing changes."""
    refused_on_create_and_update("--allow-ip", value, "192.0.2.7", 2, "--allow-ip")
    assert show("shop")["allowed_ips"] == ["192.0.2.7/32"]


def test_clear_allow_ip_empties_the_list(data_dir: Path) -> None:
    """--clear-allow-ip empties the allow-list; with --allow-ip too it is refused."""
    create("shop", "--sender", "1", "--allow-ip", "192.0.2.0/24", "--allow-ip", "2001:db8::/32")
    assert (
        invoke("accounts", "update", "shop", "--clear-allow-ip", "--allow-ip", "10.0.0.1")[0] == 2
    )
    assert show("shop")["allowed_ips"] == ["192.0.2.0/24", "2001:db8::/32"]
    assert invoke("accounts", "update", "shop", "--clear-allow-ip")[0] == 0
    assert show("shop")["allowed_ips"] == []


def test_sender_of_another_account_is_refused(data_dir: Path) -> None:
    """A sender already owned by another account is refused on create and on update."""
    create("shop", "--sender", "28444")
    code, output = invoke("accounts", "create", "other", "--sender", "5", "--sender", "28444")
    assert code == 1
    assert "sender 28444 belongs to account 'shop'" in output
    assert [a["account"] for a in json_of("accounts", "list")] == ["shop"]
    create("other", "--sender", "5")
    code, output = invoke("accounts", "update", "other", "--sender", "28444")
    assert code == 1
    assert "belongs to account 'shop'" in output
    assert show("other")["senders"] == ["5"]
    assert invoke("accounts", "update", "shop", "--sender", "28444", "--sender", "6")[0] == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/hook", "https://"])
def test_a_postback_url_no_postback_can_reach_is_refused(data_dir: Path, url: str) -> None:
    """--postback-url that is not http(s) with a host is refused on create and on update,
    saying so; nothing is created and the URL already set stays."""
    good = "https://example.com/hook"
    refused_on_create_and_update("--postback-url", url, good, 1, "http:// or https://")
    assert show("shop")["postback_url"] == good


def test_update_with_nothing_to_change_says_so(data_dir: Path) -> None:
    """`accounts update NAME` without an option says there is nothing to change (exit 2)."""
    create("shop", "--sender", "1")
    code, output = invoke("accounts", "update", "shop")
    assert code == 2
    assert "nothing to change" in output


def test_log_level_takes_only_known_levels(data_dir: Path) -> None:
    """--log-level refuses a level it does not know, before starting anything."""
    code, output = invoke("run", "--log-level", "loud")
    assert code == 2
    assert "--log-level" in output
    assert "'loud' is not one of" in output
    assert not data_dir.exists()


def test_migrate_says_what_it_applied(data_dir: Path) -> None:
    """`migrate` lists the revisions it applied, then says the schema was already current."""
    code, output = invoke("migrate")
    assert code == 0
    assert "applied schema revisions 0001, 0002" in output
    code, output = invoke("migrate")
    assert (code, output.strip()) == (0, "the schema was already up to date: nothing applied")


def in_flight_message(data_dir: Path, account_id: int, state: str) -> None:
    """A template, a message, its recipient in `state` with a history event, a delivery
    job, and a postback job, of one account."""
    now = dt.datetime.now(dt.UTC)
    job = {"state": "pending", "attempts": 0, "run_at": now, "created_at": now, "updated_at": now}

    async def go() -> None:
        db = embedded_db(data_dir)
        async with db.write() as conn:
            template_id = (
                await conn.execute(
                    templates.insert().values(
                        account_id=account_id,
                        kind="send",
                        name="t",
                        state="ready",
                        slides=[],
                        slide_count=0,
                        total_size=0,
                        created_at=now,
                    )
                )
            ).inserted_primary_key[0]
            await conn.execute(
                messages.insert().values(
                    id=f"m{account_id}",
                    account_id=account_id,
                    template_id=template_id,
                    action="sendMMS",
                    sender="1",
                    disable_fallback=False,
                    disable_fallback_link=False,
                    link_expires_at=now,
                    expires_at=now,
                    created_at=now,
                )
            )
            await conn.execute(
                recipients.insert().values(
                    tracking_id=f"t{account_id}",
                    message_id=f"m{account_id}",
                    account_id=account_id,
                    msisdn="12399471613",
                    state=state,
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                recipient_events.insert().values(tracking_id=f"t{account_id}", state=state, at=now)
            )
            await conn.execute(
                jobs.insert().values(kind="deliver", tracking_id=f"t{account_id}", **job)
            )
            payload = {"account_id": account_id, "body": "<postback/>"}
            await conn.execute(jobs.insert().values(kind="postback", payload=payload, **job))
        await db.close()

    asyncio.run(go())


def rows(data_dir: Path) -> dict[str, int]:
    """How many rows each table touched by a deletion has."""

    async def go() -> dict[str, int]:
        db = embedded_db(data_dir)
        counts = {}
        async with db.read() as conn:
            for table in (templates, messages, recipients, recipient_events, jobs):
                counts[table.name] = await conn.scalar(
                    sa.select(sa.func.count()).select_from(table)
                )
        await db.close()
        return counts

    return asyncio.run(go())


def test_delete_refuses_while_messages_are_in_flight(data_dir: Path) -> None:
    """delete refuses an account with a recipient still queued (nothing is removed); with
    --force it removes the account with its templates, messages, recipients and jobs,
    leaving other accounts' rows alone."""
    shop, other = create("shop", "--sender", "1")["id"], create("other", "--sender", "2")["id"]
    in_flight_message(data_dir, shop, "queued")
    in_flight_message(data_dir, other, "queued")
    before = rows(data_dir)
    code, output = invoke("accounts", "delete", "shop")
    assert code == 1
    assert "1 messages in flight" in output
    assert "--force" in output
    assert rows(data_dir) == before
    assert invoke("accounts", "delete", "shop", "--force")[0] == 0
    assert rows(data_dir) == {name: count // 2 for name, count in before.items()}
    assert [a["account"] for a in json_of("accounts", "list")] == ["other"]
    assert invoke("accounts", "delete", "shop")[0] == 1


def test_delete_an_account_whose_messages_are_done(data_dir: Path) -> None:
    """An account whose messages all reached a final state is deleted without --force."""
    shop = create("shop", "--sender", "1")["id"]
    in_flight_message(data_dir, shop, "delivered")
    code, output = invoke("accounts", "delete", "shop")
    assert code == 0, output
    assert set(rows(data_dir).values()) == {0}


def test_piped_output_is_not_wrapped(tmp_path: Path) -> None:
    """Piped (not a terminal), a long table row or message stays on one line."""
    long_url = "https://hooks.example.com/" + "x" * 150
    environment = env(MMSGATE_DATA_DIR=str(tmp_path / "data"))
    command = [sys.executable, "-m", "mmsgate", "accounts"]
    created = subprocess.run(
        [*command, "create", "shop", "--sender", "1", "--postback-url", long_url],
        env=environment, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert any(
        line.startswith("api-key: ") and len(line) > 40 for line in created.stdout.splitlines()
    )
    listed = subprocess.run(
        [*command, "list"], env=environment, capture_output=True, text=True, timeout=60, check=True
    )
    assert any(long_url in line for line in listed.stdout.splitlines()), listed.stdout


def test_a_command_without_logging_of_its_own_keeps_stdout_for_its_output(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After any command starts, events go to stderr at warning and above, never to stdout,
    where structlog's default would print them in the middle of a `--json` answer."""
    import structlog

    structlog.reset_defaults()
    assert runner.invoke(app, ["accounts", "list", "--json"]).exit_code == 0
    capsys.readouterr()
    log = structlog.get_logger("mmsgate.test")
    log.info("test.info_event")
    log.warning("test.warning_event")
    captured = capsys.readouterr()
    assert "test." not in captured.out
    assert "test.warning_event" in captured.err
    assert "test.info_event" not in captured.err
