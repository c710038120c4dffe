"""Hostile XML and oversized bodies get a clean Failure: no trace, no file, bounded memory."""

from __future__ import annotations

import resource

import pytest

from tests.api.helpers import failure_code, fields, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<request><action>saveMMS</action><api-key>&lol9;</api-key></request>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<request><action>saveMMS</action><api-key>k</api-key><name>&secret;</name></request>"""

XXE_PARAMETER = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % ext SYSTEM "http://127.0.0.1:9/evil.dtd"> %ext;]>
<request><action>saveMMS</action></request>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE request SYSTEM "file:///etc/passwd">
<request><action>saveMMS</action></request>"""


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, XXE, XXE_PARAMETER, EXTERNAL_DTD],
    ids=["billion-laughs", "xxe", "xxe-parameter", "external-dtd"],
)
async def test_dtd_attacks_are_e108(gateway: Gateway, body: str) -> None:
    """DTDs and entities are refused before expansion: E108, and no file content leaks."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = await gateway.xml(body)
    assert response.status_code == 200
    assert failure_code(response.content) == "E108"
    assert "root:" not in response.text
    assert "Traceback" not in response.text
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000


async def test_deep_nesting_is_e108(gateway: Gateway) -> None:
    """Elements nested past the depth limit are refused with E108."""
    body = "<request>" + "<a>" * 5000 + "</a>" * 5000 + "</request>"
    assert failure_code((await gateway.xml(body)).content) == "E108"


async def test_oversized_body_is_e100(gateway: Gateway) -> None:
    """A body over the size limit is refused with E100 without being parsed."""
    body = text_template(gateway.api_key).replace("Hello", "x" * (2 * 1024 * 1024))
    response = await gateway.xml(body)
    assert failure_code(response.content) == "E100"
    assert "larger than" in fields(response.content)["error-info"]


async def test_garbage_bytes_are_e108(gateway: Gateway) -> None:
    """Binary garbage is E108, never a 500."""
    response = await gateway.xml(bytes(range(256)) * 4)
    assert response.status_code == 200
    assert failure_code(response.content) == "E108"


async def test_empty_body_is_e100(gateway: Gateway) -> None:
    """An empty POST is E100."""
    assert failure_code((await gateway.xml(b"")).content) == "E100"


async def test_api_key_is_not_stored_in_clear(gateway: Gateway) -> None:
    """The database holds only a hash of the API key."""
    import sqlalchemy as sa

    from mmsgate.store import schema

    async with gateway.services.db.read() as conn:
        rows = (await conn.execute(sa.select(schema.accounts))).all()
    assert all(gateway.api_key not in str(tuple(row)) for row in rows)
