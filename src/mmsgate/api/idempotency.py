"""Idempotent accepts: the `Idempotency-Key` header, for every API codec.

A client that sent a request and heard no answer (a timeout, a dropped connection, a
killed server) cannot tell whether it was accepted; Sinch's APIs give it no safe way to
ask again (`client-reference` is not unique). With this header it can: the same key with
the same request, within `store.idempotency.WINDOW` (24 h), answers the first answer
again and accepts nothing more; the same key with another request is refused (E100).
Keys are per account. A request that is refused stores no key, so its retry, fixed or
not, is a request of its own.

The codec reads the header's values and the raw body (`claim`), and runs the action
through `once` with the claim, which the action hands to the writer with its answer, so
the key is committed in the accept's own transaction (store/idempotency.py). A request
whose key another request stored while it was being accepted (both found it free) wrote
nothing (`errors.KeyTaken`) and is answered as that one's retry.

A request is the API's name and its body's bytes, hashed (SHA-256): a retry is the same
bytes to the same API; the XML and the JSON form of one send are two requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from mmsgate import codes, errors, models
from mmsgate.api import request_log, results
from mmsgate.store import idempotency as keys

if TYPE_CHECKING:
    from mmsgate.api.actions import Services

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
# The accepts a key makes safe to retry; on other actions the header is checked, not used
# (a delete or a listing changes nothing when done twice).
ACTIONS = frozenset({models.Action.SEND_MMS, models.Action.SEND_SAVED_MMS, models.Action.SAVE_MMS})
Answer = results.Sent | results.Saved


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A request's Idempotency-Key and the fingerprint of the request."""

    key: str
    fingerprint: str

    def new_key(self, answer: Answer) -> keys.NewKey:
        """The key to store with the accept that gives `answer` (its mms-id aside)."""
        return keys.NewKey(self.key, self.fingerprint, results.to_data(answer))


def claim(values: Sequence[str], api: str, body: bytes) -> Claim | None:
    """The request's claim on its key: None without the header; E100 for a key that is
    empty, longer than MAX_LENGTH, not printable ASCII, or given more than once."""
    if not values:
        return None
    if len(values) > 1:
        raise _bad(f"{HEADER} given {len(values)} times, at most once")
    key = values[0]
    if not key or len(key) > MAX_LENGTH or not all(" " <= c <= "~" for c in key):
        raise _bad(f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters")
    digest = hashlib.sha256(api.encode() + b"\0" + body).hexdigest()
    return Claim(key, digest)


async def once(
    services: Services,
    account: models.Account,
    claim: Claim | None,
    accept: Callable[[Claim | None], Awaitable[Answer]],
) -> Answer:
    """`accept(claim)` unless the account's key already answered: then that answer again,
    or E100 when it answered another request. Without a claim, just `accept(None)`."""
    if claim is None:
        return await accept(None)
    found = await keys.find(services.db, account.id, claim.key, services.clock())
    if found is not None:
        return _replayed(found, claim)
    try:
        return await accept(claim)
    except errors.KeyTaken:
        found = await keys.find(services.db, account.id, claim.key, services.clock())
        if found is None:  # the conflict was not the key after all
            raise errors.ApiError(codes.ErrorCode.INTERNAL) from None
        return _replayed(found, claim)


def _replayed(found: keys.StoredKey, claim: Claim) -> Answer:
    if found.fingerprint != claim.fingerprint:
        raise _bad(f"{HEADER} '{claim.key}' was already used with a different request")
    request_log.note(replayed=True)
    return results.from_data(found.result, found.mms_id)


def _bad(info: str) -> errors.ApiError:
    return errors.ApiError(codes.ErrorCode.INVALID_REQUEST, f"Invalid request: {info}")
