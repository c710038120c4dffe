"""Postbacks: one signed POST per event to the account's postback URL, retried until it is
taken (any 2xx) or the retry window closes, then left dead in the queue for replay.

Each POST carries `X-Mmsgate-Timestamp` and `X-Mmsgate-Signature: v1=<hex>`, the
HMAC-SHA256 of `timestamp + "." + body` under the account's postback secret. Sinch signs
nothing; clients that ignore the headers are unaffected.
"""

from __future__ import annotations

import hashlib
import hmac

import httpx
import structlog

from mmsgate import metrics
from mmsgate.media import fetch
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.worker import Outcome
from mmsgate.postback_xml import template_postback
from mmsgate.store import accounts
from mmsgate.store.deliveries import postback_job
from mmsgate.store.jobs import Job

log = structlog.get_logger(__name__)
TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Mmsgate-Signature"
TIMESTAMP_HEADER = "X-Mmsgate-Timestamp"
__all__ = ["postback_job", "send_postback", "signature", "template_postback"]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of X-Mmsgate-Signature for this body at this time."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "v1=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


async def send_postback(job: Job, deps: Deps) -> Outcome:
    """Step for JobKind.POSTBACK: POST the stored body, signed; retry until accepted."""
    payload = job.payload or {}
    target = await accounts.postback_target(deps.db, int(payload["account_id"]))
    url, secret = target if target is not None else (None, "")
    if not url:
        log.info("postback.no_url", job_id=job.id)
        return Outcome()
    body = str(payload["body"]).encode("utf-8")
    problem = await _refused(url, deps.allow_private_networks)
    if problem is None:
        problem = await _post(
            deps, url, secret, body, str(payload.get("content_type", "application/xml"))
        )
    if problem is None:
        metrics.POSTBACKS.labels("delivered").inc()
        log.info("postback.delivered", job_id=job.id, attempt=job.attempts)
        return Outcome()
    metrics.POSTBACKS.labels("failed").inc()
    if deps.clock() - job.created_at > deps.postback_window:
        return Outcome.failed(f"gave up after {deps.postback_window}: {problem}")
    return Outcome.retry(problem)


async def _post(deps: Deps, url: str, secret: str, body: bytes, content_type: str) -> str | None:
    timestamp = int(deps.clock().timestamp())
    headers = {
        "Content-Type": content_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    try:
        async with deps.postback_slots:
            response = await deps.http.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__} posting to {url}"
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code} from {url}"


async def _refused(url: str, allow_private: bool) -> str | None:
    """Why the URL may not be posted to (scheme, or an address on a private network)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"postback URL {url} is not http(s)"
    if allow_private:
        return None
    try:
        addresses = await fetch.resolve_host(parsed.host, parsed.port or 443)
    except OSError:
        return f"postback host {parsed.host} does not resolve"
    if not addresses or not all(fetch.address_allowed(a) for a in addresses):
        return f"postback URL {url} points at an address that is not allowed"
    return None
