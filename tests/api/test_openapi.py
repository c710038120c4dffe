"""GET /openapi.json and GET /docs: the OpenAPI 3.1 document of the JSON routes, valid,
complete, generated from the types the routes answer with, and its page for people."""

from __future__ import annotations

import html.parser
import importlib.metadata
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from mmsgate.api import openapi
from mmsgate.api.app import create_app
from mmsgate.store.schema import templates
from tests.api.helpers import fields, sendings, text_template
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio


async def spec_of(gateway: Gateway) -> dict[str, Any]:
    response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def check(spec: dict[str, Any], path: str, method: str, status: int, body: object) -> None:
    """`body` is what the document says `method path` answers with `status`."""
    answer = spec["paths"][path][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    whole = {**schema, "components": spec["components"]}
    jsonschema.validate(body, whole, cls=jsonschema.Draft202012Validator)


async def test_the_document_is_valid_openapi_3_1(gateway: Gateway) -> None:
    """/openapi.json passes openapi-spec-validator as OpenAPI 3.1, titled and versioned
    from the package."""
    spec = await spec_of(gateway)
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["version"] == importlib.metadata.version("mmsgate")


async def test_every_v1_route_is_documented_with_its_key(gateway: Gateway) -> None:
    """Each /v1 route and method the app serves is an operation of the document, and each
    operation needs the x-api-key header."""
    spec = await spec_of(gateway)
    served = {
        (route.path, method.lower())
        for route in app_routes(gateway)
        if route.path.startswith("/v1/") or route.path == "/v1"
        for method in (route.methods or ()) - {"HEAD"}
    }
    v1 = {path: ops for path, ops in spec["paths"].items() if path.startswith("/v1/")}
    documented = {(path, method) for path, ops in v1.items() for method in ops}
    assert served == documented
    scheme = spec["components"]["securitySchemes"][openapi.SECURITY]
    assert scheme == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    for ops in v1.values():
        for op in ops.values():
            assert op["security"] == [{openapi.SECURITY: []}]
            assert {"200", "401", "500"} <= set(op["responses"])


def app_routes(gateway: Gateway) -> list[Route]:
    app = create_app(gateway.services.settings, gateway.services)
    return [r for r in app.routes.routes if isinstance(r, Route)]


async def test_the_answers_match_their_schemas(gateway: Gateway) -> None:
    """A real listing, status, template report, preview and each kind of refusal validate
    against the schemas the document gives them."""
    spec = await spec_of(gateway)
    key = {"x-api-key": gateway.api_key}
    mms_id = fields((await gateway.xml(text_template(gateway.api_key))).content)["mms-id"]
    send = (
        f"<request><action>sendSavedMMS</action><api-key>{gateway.api_key}</api-key>"
        f"<mms-id>{mms_id}</mms-id><to>17745550100,17745550101</to><from>28444</from>"
        "<service-id>32113</service-id><fallback-sms-text>x</fallback-sms-text></request>"
    )
    tracking_id = sendings((await gateway.xml(send)).content)[0]["tracking-id"]
    page = await gateway.client.get("/v1/messages", params={"limit": "1"}, headers=key)
    check(spec, "/v1/messages", "get", 200, page.json())
    assert page.json()["next-cursor"] is not None
    one = await gateway.client.get(f"/v1/messages/{tracking_id}", headers=key)
    check(spec, "/v1/messages/{tracking_id}", "get", 200, one.json())
    report = await gateway.client.get(f"/v1/templates/{mms_id}", headers=key)
    check(spec, "/v1/templates/{mms_id}", "get", 200, report.json())
    preview = await gateway.client.post("/v1/preview", content=send, headers=key)
    check(spec, "/v1/preview", "post", 200, preview.json())
    refusals = [
        ("/v1/messages", "get", await gateway.client.get("/v1/messages?x=1", headers=key)),
        ("/v1/messages", "get", await gateway.client.get("/v1/messages")),
        (
            "/v1/messages/{tracking_id}",
            "get",
            await gateway.client.get("/v1/messages/n", headers=key),
        ),
        ("/v1/templates/{mms_id}", "get", await gateway.client.get("/v1/templates/9", headers=key)),
        (
            "/v1/preview",
            "post",
            await gateway.client.post("/v1/preview", content="<a", headers=key),
        ),
    ]
    for path, method, response in refusals:
        check(spec, path, method, response.status_code, response.json())


async def test_the_schemas_come_from_the_route_types() -> None:
    """Every answer schema is a component generated from a route's TypedDict, with the
    descriptions written on its fields."""
    spec = openapi.document()
    components = spec["components"]["schemas"]
    item = components["MessageItem"]
    assert set(item["required"]) == set(item["properties"])
    assert {"tracking-id", "history", "fallback", "state"} <= set(item["properties"])
    assert item["properties"]["tracking-id"]["description"]
    assert set(components["ErrorBody"]["required"]) == {"error-code", "error-info"}
    limit = next(
        p for p in spec["paths"]["/v1/messages"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)


class _Page(html.parser.HTMLParser):
    """What a page asks the browser to load: every src and stylesheet href, every script."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe", "link", "object", "embed"):
            self.loads.append(f"{tag} {found}")
        if found.get("id"):
            self.ids.add(str(found["id"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_the_docs_page_shows_every_operation_and_loads_nothing(gateway: Gateway) -> None:
    """/docs is one HTML page, sized for phones, naming every operation with its parameters,
    answers and every schema, with no script, stylesheet or image from anywhere, and the
    hosted pages' headers against sniffing and referrers."""
    response = await gateway.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    page = _Page()
    page.feed(response.text)
    assert page.loads == []
    assert 'name="viewport"' in response.text
    text = " ".join(page.text)
    spec = openapi.document()
    for path, ops in spec["paths"].items():
        assert path in text
        for op in ops.values():
            assert f"op-{op['operationId']}" in page.ids
            for parameter in op.get("parameters", ()):
                assert parameter["name"] in text
    for name in spec["components"]["schemas"]:
        assert f"schema-{name}" in page.ids
    assert "client-reference" in text
    assert "at least 1, at most 500" in text
    assert 'href="#schema-MessageItem"' in response.text


def test_an_operation_is_one_entry() -> None:
    """A new operation, with a JSON body and two shapes of answer under one status, is one
    more Operation: the document stays valid and names both shapes."""
    from typing import TypedDict

    class Ask(TypedDict):
        action: str

    class Done(TypedDict):
        status: str

    class Refused(TypedDict):
        code: str

    extra = openapi.Operation(
        "post",
        "/ep/v9/",
        "tryIt",
        "Try",
        "An operation added for the test.",
        {200: openapi.Answer("done or refused", Done, alternatives=(Refused,))},
        body=openapi.Body("application/json", Ask, "what to do"),
    )
    spec = openapi.document((*openapi.OPERATIONS, extra))
    validate(spec)
    answer = spec["paths"]["/ep/v9/"]["post"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {
        "anyOf": [{"$ref": "#/components/schemas/Done"}, {"$ref": "#/components/schemas/Refused"}]
    }
    assert {"Ask", "Done", "Refused", "MessageItem"} <= set(spec["components"]["schemas"])


async def test_a_report_stored_before_the_newer_measures_still_matches(gateway: Gateway) -> None:
    """A template report kept by an older mmsgate, its parts without `dropped` or `kept`,
    is answered with those empty and null, as its schema says."""
    spec = await spec_of(gateway)
    mms_id = fields((await gateway.xml(text_template(gateway.api_key))).content)["mms-id"]
    old_part = {
        "slide": 1,
        "kind": "text",
        "content_type": "text/plain",
        "source_bytes": 5,
        "output_bytes": 5,
    }
    old = {"total_bytes": 900, "budget_bytes": 614400, "fits": True, "fallback": None}
    async with gateway.services.db.write() as conn:
        await conn.execute(
            templates.update()
            .where(templates.c.id == int(mms_id))
            .values(reports={"default": {**old, "parts": [old_part]}})
        )
    response = await gateway.client.get(
        f"/v1/templates/{mms_id}", headers={"x-api-key": gateway.api_key}
    )
    assert response.status_code == 200
    check(spec, "/v1/templates/{mms_id}", "get", 200, response.json())
    part = response.json()["profiles"]["default"]["parts"][0]
    assert part == {
        **old_part,
        "width": None,
        "height": None,
        "duration_ms": None,
        "codec": None,
        "quality": None,
        "dropped": [],
        "kept": None,
    }
