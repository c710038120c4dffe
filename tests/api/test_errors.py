"""Every synchronous error code, reached by a real request; a refused request leaves nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mmsgate import settings as settings_mod
from mmsgate.store import accounts, schema
from tests import samples
from tests.api.helpers import assert_golden, failure_code, fields, send_saved, text_template
from tests.conftest import Gateway, MediaServer

pytestmark = pytest.mark.anyio

TABLES = (
    schema.templates,
    schema.messages,
    schema.recipients,
    schema.recipient_events,
    schema.jobs,
)


async def snapshot(gw: Gateway) -> list[int]:
    async with gw.services.db.read() as conn:
        return [int(await conn.scalar(sa.select(sa.func.count()).select_from(t))) for t in TABLES]


def send_mms(key: str, slides: str, *, head: str = "", to: str = "17745550100") -> str:
    """A sendMMS request; `head` replaces nothing, it adds or overrides fields before slides."""
    return (
        f"<request><action>sendMMS</action><api-key>{key}</api-key><to>{to}</to>"
        "<from>28444</from><service-id>32113</service-id><name>n</name>"
        f"<fallback-sms-text>See it</fallback-sms-text>{head}{slides}</request>"
    )


TEXT = "<slide><message-text>hi</message-text></slide>"
URL = "http://127.0.0.1:9/x"  # never fetched: these requests fail before any fetch

# (code, request builder taking the api key): requests refused by their content alone.
STATIC_CASES = [
    ("E100", lambda k: "<hello/>"),
    ("E100", lambda k: f"<request><api-key>{k}</api-key></request>"),
    ("E100", lambda k: f"<request><action>fly</action><api-key>{k}</api-key></request>"),
    ("E104", lambda k: text_template("not-a-key")),
    ("E104", lambda k: text_template("").replace("<api-key></api-key>", "")),
    ("E108", lambda k: "<request><action>saveMMS</action>"),
    ("E110", lambda k: send_mms(k, TEXT, to="0012345")),
    ("E110", lambda k: send_mms(k, TEXT, to="1234abc5678")),
    ("E111", lambda k: send_mms(k, TEXT).replace("<from>28444</from>", "<from>99999</from>")),
    ("E111", lambda k: send_mms(k, TEXT).replace("<from>28444</from>", "")),
    ("E201", lambda k: send_mms(k, TEXT).replace("<to>17745550100</to>", "")),
    (
        "E212",
        lambda k: (
            f"<request><action>getMMSTemplates</action><api-key>{k}</api-key><page-number>0</page-number></request>"
        ),
    ),
    (
        "E213",
        lambda k: (
            f"<request><action>getMMSTemplates</action><api-key>{k}</api-key><items-per-page>x</items-per-page></request>"
        ),
    ),
    (
        "E214",
        lambda k: (
            f"<request><action>getMMSTemplates</action><api-key>{k}</api-key><start-date>last week</start-date></request>"
        ),
    ),
    (
        "E223",
        lambda k: send_mms(
            k, f"<slide><vcard><url>{URL}</url></vcard><ical><url>{URL}</url></ical></slide>"
        ),
    ),
    (
        "E224",
        lambda k: send_mms(
            k, f"<slide><image><url>{URL}</url></image><pdf><url>{URL}</url></pdf></slide>"
        ),
    ),
    ("E225", lambda k: send_mms(k, TEXT * 9)),
    (
        "E226",
        lambda k: send_mms(
            k, f"<slide><audio><url>{URL}</url></audio><video><url>{URL}</url></video></slide>"
        ),
    ),
    (
        "E227",
        lambda k: send_mms(
            k, f"<slide><video><url>{URL}</url></video><image><url>{URL}</url></image></slide>"
        ),
    ),
    ("E228", lambda k: send_mms(k, f"<slide><message-text>{'x' * 5001}</message-text></slide>")),
    (
        "E229",
        lambda k: send_mms(
            k, f"<slide><image><url>{URL}</url></image><image><url>{URL}</url></image></slide>"
        ),
    ),
    (
        "E230",
        lambda k: send_mms(
            k, "<slide><message-text>a</message-text><duration>ten</duration></slide>"
        ),
    ),
    (
        "E230",
        lambda k: send_mms(
            k, "<slide><message-text>a</message-text><duration>-3</duration></slide>"
        ),
    ),
    ("E241", lambda k: send_saved(k, "999999")),
    ("E241", lambda k: send_saved(k, "abc")),
    (
        "E241",
        lambda k: (
            f"<request><action>deleteMMSID</action><api-key>{k}</api-key><mms-id>4242</mms-id></request>"
        ),
    ),
    ("E311", lambda k: send_mms(k, TEXT).replace("<name>n</name>", "")),
    ("E312", lambda k: send_mms(k, "")),
    ("E313", lambda k: send_mms(k, "<slide><duration>5</duration></slide>")),
    ("E314", lambda k: send_mms(k, TEXT, head=f"<message-subject>{'s' * 81}</message-subject>")),
    ("E620", lambda k: send_saved(k, "")),
    ("E620", lambda k: f"<request><action>deleteMMSID</action><api-key>{k}</api-key></request>"),
    (
        "E622",
        lambda k: send_mms(k, TEXT).replace("<fallback-sms-text>See it</fallback-sms-text>", ""),
    ),
    ("E623", lambda k: send_mms(k, TEXT, to=",".join(str(17745550100 + i) for i in range(101)))),
    ("E627", lambda k: send_mms(k, TEXT).replace("32113", "11111")),
    ("E627", lambda k: send_mms(k, TEXT).replace("<service-id>32113</service-id>", "")),
    ("E650", lambda k: send_mms(k, TEXT, head="<operator-id>att</operator-id>")),
    ("E651", lambda k: send_mms(k, TEXT, head="<operator-id>99999</operator-id>")),
]


@pytest.mark.parametrize(
    ("code", "build"), STATIC_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(STATIC_CASES)]
)
async def test_static_errors(gateway: Gateway, code: str, build: object) -> None:
    """Each malformed or disallowed request gets its Sinch code and writes nothing."""
    before = await snapshot(gateway)
    response = await gateway.xml(build(gateway.api_key))  # type: ignore[operator]
    assert response.status_code == 200
    assert failure_code(response.content) == code, response.text
    assert fields(response.content)["error-info"]
    assert await snapshot(gateway) == before


async def test_failure_shape_is_golden(gateway: Gateway) -> None:
    """A send failure carries status, error-code, to and error-info in Sinch's order."""
    response = await gateway.xml(send_mms(gateway.api_key, TEXT, to="0012345"))
    assert_golden("send_mms_failure_e110.xml", response.content)


async def test_e105_account_without_api_access(gateway: Gateway) -> None:
    """An account whose API access is switched off gets E105."""
    await accounts.update(gateway.services.db, "acme", api_enabled=False)
    gateway.services.guard._accounts.clear()
    assert failure_code((await gateway.xml(text_template(gateway.api_key))).content) == "E105"


async def test_e107_action_not_allowed(gateway: Gateway) -> None:
    """An account limited to some actions gets E107 for the others."""
    await accounts.update(gateway.services.db, "acme", allowed_actions=["sendSavedMMS"])
    gateway.services.guard._accounts.clear()
    assert failure_code((await gateway.xml(text_template(gateway.api_key))).content) == "E107"


async def test_e112_ip_not_in_allow_list(gateway: Gateway) -> None:
    """A client address outside the account's allow-list gets E112; inside it passes."""
    await accounts.update(gateway.services.db, "acme", allowed_ips=["10.1.0.0/16"])
    gateway.services.guard._accounts.clear()
    assert failure_code((await gateway.xml(text_template(gateway.api_key))).content) == "E112"
    await accounts.update(gateway.services.db, "acme", allowed_ips=["127.0.0.0/8"])
    gateway.services.guard._accounts.clear()
    assert (
        fields((await gateway.xml(text_template(gateway.api_key))).content)["status"] == "Success"
    )


async def test_e113_throughput_exceeded(gateway: Gateway) -> None:
    """Requests beyond the account's per-second rate get E113."""
    await accounts.update(gateway.services.db, "acme", max_rps=2.0)
    gateway.services.guard._accounts.clear()
    codes = [
        fields((await gateway.xml(text_template(gateway.api_key))).content).get("error-code")
        for _ in range(6)
    ]
    assert "E113" in codes
    assert codes[0] is None


async def test_e120_daily_limit(gateway: Gateway) -> None:
    """Requests beyond the account's daily cap get E120."""
    await accounts.update(gateway.services.db, "acme", daily_limit=2)
    gateway.services.guard._accounts.clear()
    results = [await gateway.xml(text_template(gateway.api_key)) for _ in range(3)]
    assert [fields(r.content)["status"] for r in results] == ["Success", "Success", "Failure"]
    assert failure_code(results[2].content) == "E120"


async def test_e626_template_still_encoding(gateway: Gateway, media_server: MediaServer) -> None:
    """A template with audio is encoding until the worker finishes it: sending it is E626."""
    url = media_server.add("/a.mp3", "audio/mpeg", samples.mp3())
    body = text_template(gateway.api_key).replace(
        "</message-text></slide>", f"</message-text><audio><url>{url}</url></audio></slide>"
    )
    mms_id = fields((await gateway.xml(body)).content)["mms-id"]
    assert failure_code((await gateway.xml(send_saved(gateway.api_key, mms_id))).content) == "E626"


@pytest.mark.config(
    routes=(
        settings_mod.Route(
            name="att", kind="mm7", url="http://127.0.0.1:9/mm7", operators=(31002,)
        ),
    )
)
async def test_e628_operator_without_route(gateway: Gateway) -> None:
    """With routes configured and no default, an operator no route serves is E628."""
    response = await gateway.xml(
        send_mms(gateway.api_key, TEXT, head="<operator-id>31004</operator-id>")
    )
    assert failure_code(response.content) == "E628"
    ok = await gateway.xml(send_mms(gateway.api_key, TEXT, head="<operator-id>31002</operator-id>"))
    assert fields(ok.content)["status"] == "Success"


async def test_standard_account_needs_no_fallback_text(gateway: Gateway) -> None:
    """In standard mode fallback-sms-text is optional (no E622)."""
    await accounts.update(gateway.services.db, "acme", mode="standard")
    gateway.services.guard._accounts.clear()
    body = send_mms(gateway.api_key, TEXT).replace(
        "<fallback-sms-text>See it</fallback-sms-text>", ""
    )
    assert fields((await gateway.xml(body)).content)["status"] == "Success"


async def test_disabled_fallback_needs_no_fallback_text(gateway: Gateway) -> None:
    """With disable-fallback-sms set, fallback-sms-text is optional (no E622)."""
    body = send_mms(gateway.api_key, TEXT).replace(
        "<fallback-sms-text>See it</fallback-sms-text>",
        "<disable-fallback-sms>yes</disable-fallback-sms>",
    )
    assert fields((await gateway.xml(body)).content)["status"] == "Success"


async def test_link_expiration_beyond_a_year_is_refused(gateway: Gateway) -> None:
    """fallback-sms-link-expiration more than a year ahead, or unreadable, is E100."""
    for value in ("2099-01-01", "soon"):
        body = send_mms(
            gateway.api_key,
            TEXT,
            head=f"<fallback-sms-link-expiration>{value}</fallback-sms-link-expiration>",
        )
        assert failure_code((await gateway.xml(body)).content) == "E100"
