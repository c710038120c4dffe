"""`mmsgate accounts … --postback-format`: chosen at creation or changed later, shown by
list, show and create's JSON; a bad value is refused naming the allowed ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from mmsgate import models
from mmsgate.pipeline.postbacks import postback_job, template_postback
from mmsgate.store.schema import jobs
from tests.unit.cli_helpers import (
    create,
    embedded_db,
    invoke,
    json_of,
    refused_on_create_and_update,
    show,
)

T = models.PostbackKind.TEMPLATE


def test_accounts_post_xml_unless_told(data_dir: Path) -> None:
    """A new account's postbacks are XML; create --json, show and list --json say so."""
    created = create("shop", "--sender", "1")
    assert created["postback_format"] == "xml"
    assert show("shop")["postback_format"] == "xml"
    assert [a["postback_format"] for a in json_of("accounts", "list")] == ["xml"]


def test_create_and_update_choose_the_format(data_dir: Path) -> None:
    """--postback-format json at creation, then xml and JSON again (any case) by update:
    each change shows in show, list --json and the list table."""
    assert create("shop", "--sender", "1", "--postback-format", "json")["postback_format"] == "json"
    code, output = invoke("accounts", "update", "shop", "--postback-format", "xml")
    assert code == 0, output
    assert "postback_format" in output
    assert show("shop")["postback_format"] == "xml"
    assert invoke("accounts", "update", "shop", "--postback-format", "JSON")[0] == 0
    assert [a["postback_format"] for a in json_of("accounts", "list")] == ["json"]
    code, table = invoke("accounts", "list")
    assert code == 0
    assert "json" in table


@pytest.mark.parametrize("value", ["soap", "", "xml,json"])
def test_a_bad_format_is_refused_naming_the_allowed_ones(data_dir: Path, value: str) -> None:
    """A format other than xml or json exits 2 naming both, on create (nothing created) and
    on update (nothing changed)."""
    allowed = ("--postback-format", "'xml' or 'json'")
    refused_on_create_and_update("--postback-format", value, "json", 2, *allowed)
    assert show("shop")["postback_format"] == "json"


def test_postbacks_list_shows_each_body_in_its_accounts_format(data_dir: Path) -> None:
    """`postbacks list --json` shows a queued event as the account's format writes it:
    JSON for a JSON account, XML for an XML one."""
    shop = create("shop", "--sender", "1", "--postback-format", "json")
    other = create("other", "--sender", "2")
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    async def queue() -> None:
        db = embedded_db(data_dir)
        async with db.write() as conn:
            for account_id in (shop["id"], other["id"]):
                event = models.PostbackEvent(T, account_id, "N003", mms_id=5)
                await conn.execute(jobs.insert().values(postback_job(event, now)))
        await db.close()

    asyncio.run(queue())
    listed = {p["account_id"]: p["body"] for p in json_of("postbacks", "list")}
    assert json.loads(listed[shop["id"]]) == {"origin": "MMS_MT", "code": "N003", "mms-id": "5"}
    assert listed[other["id"]] == template_postback("N003", 5).decode()
