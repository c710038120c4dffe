"""The `api.request` line of each API route, in-process: what the handlers note, and which
paths get no line."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from tests.conftest import Gateway

pytestmark = pytest.mark.anyio


def request_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "api.request"]


async def test_every_api_route_gets_one_line(gateway: Gateway) -> None:
    """/v1/templates, /v1/preview and /kannel/dlr each log one line with their action,
    the account when a key was given, and a code; /healthz and /metrics log none."""
    key = {"x-api-key": gateway.api_key}
    with structlog.testing.capture_logs() as logs:
        await gateway.client.get("/v1/templates/999", headers=key)
        await gateway.client.post("/v1/preview", content=b"<request/>", headers={"x-api-key": "x"})
        await gateway.client.get("/kannel/dlr")
        await gateway.client.get("/healthz")
        await gateway.client.get("/metrics")
    template, preview, dlr = request_lines(logs)
    assert (template["action"], template["account"], template["status"]) == (
        "templateReport",
        "acme",
        404,
    )
    assert template["code"] == "E241"
    assert (preview["action"], preview["code"], preview["status"]) == ("preview", "E104", 401)
    assert (dlr["action"], dlr["code"]) == ("kannelReceipt", "HTTP 401")  # no route token
    assert all(isinstance(line["ms"], float) for line in (template, preview, dlr))
