"""Postbacks: one signed POST per event to the account's postback URL, retried until it is
taken (any 2xx) or the retry window closes, then left dead in the queue for replay.

The status line decides: a 2xx is taken whatever follows it, and only the first few KB of
the body are read (a receiver's long answer, or one that never ends, is no failure). A URL
that no POST can reach (not http or https) fails the postback at once: retrying cannot help.
Each host gets its share of the worker's slots (`shares`), so a slow receiver delays only
its own account's postbacks.

A job holds its event as data (models.PostbackEvent), rendered when it is sent in the
account's format as it is then: Sinch XML (postback_xml, `application/xml`) or Sinch JSON
(postback_json, `application/json`). A job queued by an earlier version holds the rendered
body, which is sent as it is.

Each POST carries `X-Mmsgate-Timestamp` and `X-Mmsgate-Signature: v1=<hex>`, the
HMAC-SHA256 of `timestamp + "." + body` under the account's postback secret, whatever the
body's format. Sinch signs nothing; clients that ignore the headers are unaffected.

The POSTs go through the worker's `PostbackSender` (`Deps.http`: keep-alive to each
customer, 10 s timeout by default). Its address guard runs when a connection is opened, on
the addresses that connection then uses: no DNS lookup per postback, and no gap between the
address checked and the one connected to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import structlog

from mmsgate import http_client, metrics, postback_json, postback_xml
from mmsgate.errors import MmsgateError
from mmsgate.models import JSONValue, PostbackEvent, PostbackFormat
from mmsgate.pipeline.deps import Deps
from mmsgate.pipeline.shares import Host
from mmsgate.pipeline.worker import Outcome
from mmsgate.postback_xml import template_postback
from mmsgate.store.deliveries import postback_job
from mmsgate.store.jobs import Job

log = structlog.get_logger(__name__)
SIGNATURE_HEADER = "X-Mmsgate-Signature"
TIMESTAMP_HEADER = "X-Mmsgate-Timestamp"
__all__ = ["body_of", "postback_job", "send_postback", "signature", "template_postback"]
XML = "application/xml"
JSON = "application/json"
_RENDERERS = {
    PostbackFormat.XML: (postback_xml.render, XML),
    PostbackFormat.JSON: (postback_json.render, JSON),
}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of X-Mmsgate-Signature for this body at this time."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "v1=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def body_of(
    payload: Mapping[str, JSONValue], form: PostbackFormat = PostbackFormat.XML
) -> tuple[bytes, str]:
    """The bytes a postback job sends and their Content-Type: its event (`postback_job`)
    rendered in `form`, or the body an earlier version stored."""
    event = payload.get("event")
    if isinstance(event, dict):
        render, content_type = _RENDERERS[form]
        return render(PostbackEvent.from_data(event)), content_type
    if event is not None:
        raise MmsgateError(f"postback job's event is not an object: {event!r}")
    return str(payload["body"]).encode("utf-8"), str(payload.get("content_type", XML))


def account_of(payload: Mapping[str, JSONValue]) -> int:
    """The account a postback job goes to, as `postback_job` names it."""
    account_id = payload.get("account_id")
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        raise MmsgateError(f"postback job names no account: {account_id!r}")
    return account_id


async def send_postback(job: Job, deps: Deps) -> Outcome:
    """Step for JobKind.POSTBACK: POST the event's body, signed; retry until accepted."""
    payload = job.payload or {}
    account_id = account_of(payload)
    target = await deps.http.target(deps.db, account_id)
    url = target.url if target is not None else None
    if target is None or not url:
        log.info("postback.no_url", job_id=job.id)
        return Outcome()
    unusable = http_client.url_problem(url)
    if unusable is not None:  # old data: URLs are checked when they are set
        metrics.POSTBACKS.labels("failed").inc()
        log.error("postback.gave_up", job_id=job.id, account_id=account_id, error=unusable)
        return Outcome.failed(f"postback URL {url} {unusable}")
    host = _host(url)
    wait = await deps.postback_shares.admit(host)
    if wait is not None:
        return Outcome.later(dt.timedelta(seconds=wait))
    body, content_type = body_of(payload, target.format)
    problem = await _timed_post(deps, host, url, target.secret, body, content_type)
    if problem is None:
        metrics.POSTBACKS.labels("delivered").inc()
        log.info("postback.delivered", job_id=job.id, attempt=job.attempts)
        return Outcome()
    metrics.POSTBACKS.labels("failed").inc()
    if deps.clock() - job.created_at > deps.postback_window:
        log.error("postback.gave_up", job_id=job.id, account_id=account_id, error=problem)
        return Outcome.failed(f"gave up after {deps.postback_window}: {problem}")
    log.warning(
        "postback.failed", job_id=job.id, account_id=account_id, attempt=job.attempts, error=problem
    )
    return Outcome.retry(problem)


def _host(url: str) -> Host:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or (443 if scheme == "https" else 80)


async def _timed_post(
    deps: Deps, host: Host, url: str, secret: str, body: bytes, content_type: str
) -> str | None:
    """`_post` within the host's share, telling the share how long it took and whether the
    host let it time out."""
    started, timed_out = time.monotonic(), False
    try:
        problem, timed_out = await _post(deps, url, secret, body, content_type)
        return problem
    finally:
        seconds = time.monotonic() - started
        deps.postback_shares.done(host, seconds, timed_out=timed_out)


async def _post(
    deps: Deps, url: str, secret: str, body: bytes, content_type: str
) -> tuple[str | None, bool]:
    """What went wrong (None: the customer took it), and whether the host was too slow."""
    timestamp = int(deps.clock().timestamp())
    headers = {
        "Content-Type": content_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    try:
        response = await deps.http.client.post(url, body, headers)
    except http_client.Refused as exc:
        return f"postback URL {url} {exc}", False
    except http_client.Unresolved as exc:
        return f"ConnectFailed posting to {url}: postback host {exc}", False
    except http_client.HttpError as exc:
        slow = isinstance(exc, http_client.Timeout)
        return f"{type(exc).__name__} posting to {url}: {exc}", slow
    if 200 <= response.status < 300:
        return None, False
    return f"HTTP {response.status} from {url}", False
