"""The /v1 JSON routes: every refusal is `{"error-code", "error-info"}` with a status that
says its kind, answered in one place."""

from __future__ import annotations

import pytest
import structlog

from mmsgate.store import queries
from tests.conftest import Gateway

pytestmark = pytest.mark.anyio

PREVIEW = "<request><action>sendMMS</action></request>"


async def refused(gateway: Gateway, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
    response = await gateway.client.request(method, path, **kwargs)  # type: ignore[arg-type]
    body = response.json()
    assert set(body) == {"error-code", "error-info"}, body
    assert body["error-info"], body
    return response.status_code, body


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/messages/abc"), ("GET", "/v1/templates/1"), ("POST", "/v1/preview")],
)
async def test_every_v1_route_refuses_a_missing_key_with_401_e104(
    gateway: Gateway, method: str, path: str
) -> None:
    """Without an API key each /v1 route answers 401 with E104 in the one JSON shape."""
    status, body = await refused(gateway, method, path, content=PREVIEW)
    assert (status, body["error-code"]) == (401, "E104")


async def test_an_unknown_tracking_id_is_404_e242(gateway: Gateway) -> None:
    """A tracking-id the account has no message for is 404 with E242 and the id in the info."""
    headers = {"x-api-key": gateway.api_key}
    status, body = await refused(gateway, "GET", "/v1/messages/nope", headers=headers)
    assert (status, body["error-code"]) == (404, "E242")
    assert "nope" in body["error-info"]


async def test_an_unknown_template_is_404_e241(gateway: Gateway) -> None:
    """An mms-id the account has no template for is 404 with Sinch's E241."""
    headers = {"x-api-key": gateway.api_key}
    status, body = await refused(gateway, "GET", "/v1/templates/999", headers=headers)
    assert (status, body["error-code"]) == (404, "E241")
    assert "999" in body["error-info"]


async def test_a_preview_body_over_the_limit_is_413_e100(gateway: Gateway) -> None:
    """A preview body over `max_body_bytes` is 413 with E100 naming the limit."""
    limit = gateway.services.settings.api.max_body_bytes
    headers = {"x-api-key": gateway.api_key}
    big = b"<" + b"x" * limit
    status, body = await refused(gateway, "POST", "/v1/preview", content=big, headers=headers)
    assert (status, body["error-code"]) == (413, "E100")
    assert str(limit) in body["error-info"]


async def test_a_preview_of_broken_xml_is_400_e108(gateway: Gateway) -> None:
    """A preview document that is not XML is 400 with E108."""
    headers = {"x-api-key": gateway.api_key}
    status, body = await refused(gateway, "POST", "/v1/preview", content=b"<a", headers=headers)
    assert (status, body["error-code"]) == (400, "E108")


async def test_an_unexpected_error_is_500_e503_logged_with_its_trace(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault inside a /v1 route is 500 with E503 and no trace; the trace goes to the log."""

    async def broken(*_args: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(queries, "recipient_status", broken)
    headers = {"x-api-key": gateway.api_key}
    with structlog.testing.capture_logs() as logs:
        status, body = await refused(gateway, "GET", "/v1/messages/abc", headers=headers)
    assert (status, body["error-code"]) == (500, "E503")
    assert "secret" not in body["error-info"]
    (internal,) = [e for e in logs if e["event"] == "api.internal_error"]
    assert "secret detail" in internal["error"]
    (line,) = [e for e in logs if e["event"] == "api.request"]
    assert (line["status"], line["code"]) == (500, "E503")


@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/messages/a/b", "/v1"])
async def test_an_unknown_v1_path_is_404_e100_in_the_json_shape(
    gateway: Gateway, path: str
) -> None:
    """A path under /v1 that no route serves answers 404 with E100 in the one JSON shape."""
    status, body = await refused(gateway, "GET", path)
    assert (status, body["error-code"]) == (404, "E100")
    assert path in body["error-info"]


async def test_a_wrong_method_on_a_v1_route_is_405_e100_in_the_json_shape(
    gateway: Gateway,
) -> None:
    """GET on /v1/preview answers 405 with E100 in the JSON shape and says the allowed method."""
    response = await gateway.client.get("/v1/preview")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error-code"] == "E100"
    assert "POST" in response.json()["error-info"]


async def test_other_paths_keep_their_plain_not_found(gateway: Gateway) -> None:
    """Outside /v1 an unknown path or method keeps Starlette's plain-text answer."""
    missing = await gateway.client.get("/nothing")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    wrong = await gateway.client.post("/healthz")
    assert (wrong.status_code, wrong.text) == (405, "Method Not Allowed")
