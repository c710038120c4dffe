"""Every exception mmsgate raises, under one root.

    MmsgateError
    ├── ConfigError              the configuration file or environment is invalid
    ├── StartupError             a command cannot start: database, data dir, port; says the fix
    ├── AccountError             an account change is refused (a sender another account owns …)
    ├── BodyTooLarge             a request body is over its route's limit
    ├── KeyTaken                 an accept lost its Idempotency-Key to a request that raced it
    ├── ApiError                 a request is refused; carries its Sinch error code
    │   ├── Unauthenticated      no API key, or one no account has
    │   ├── NotFound             what the request names does not exist (for its account)
    │   └── MediaError           a slide's media could not be fetched or is unusable
    ├── media.images.ImageTooBig     an image cannot reach its byte target
    ├── media.av.AvTooBig            audio or video cannot reach its byte target
    ├── media.budget.OverBudget      an image would cost more pixels/work than allowed
    ├── media.prepare.PartFailed     a part cannot be transcoded at all (names part and kind)
    ├── xmlsafe.Refused (ValueError)       the XML declares a DTD or an entity
    ├── xmlsafe.Unreadable (ValueError)    the XML's encoding is unknown or wrong
    ├── mm7_codec.Mm7FormatError (ValueError)  bytes that are not a usable MM7 message
    ├── mime.MimeError (ValueError)     bytes that are not a readable multipart body
    ├── http_client.HttpError    a request got no usable HTTP response
    │   ├── ConnectFailed        refused, unreachable, TLS failed
    │   │   ├── Refused          the host resolves to an address the guard forbids (SSRF)
    │   │   ├── Unresolved       the host name has no address
    │   │   └── ConnectTimeout   no connection in time (a Timeout too)
    │   ├── Timeout              no answer in time
    │   └── ProtocolError        closed early, or an answer that is not HTTP/1.x
    ├── store.fallbacks.UnknownPart (LookupError)  a receipt names no SMS part we sent
    ├── carriers.smpp_pdu.PduError   bytes that are not an SMPP PDU
    └── private to their module, never seen outside it: carriers.smpp's _NotSent,
        _Unanswered, _NotBound, _Refused; http_lean's _Cut

Where a class also has a stdlib base, callers that catch that base keep working.

Errors become answers at the edges, once per kind of answer: on `POST /ep/v1/` an ApiError
is a Sinch `Failure` (api/app.py, written by api/sinch_xml.py); on the `/v1` JSON routes
every error, and the router's 404/405, is `{"error-code", "error-info"}`
(api/json_errors.py); `/mm7` answers SOAP faults (api/mm7.py), `/kannel/dlr` plain text
(api/kannel.py); a command prints the message and exits non-zero (cli_support.Commands).
"""

from __future__ import annotations

from mmsgate.codes import ErrorCode


class MmsgateError(Exception):
    """Root of every mmsgate error."""


class ConfigError(MmsgateError):
    """The configuration is invalid; the message names the bad key."""


class StartupError(MmsgateError):
    """A command cannot start (database unreachable or not migrated, data dir unusable, port
    taken); the message names the problem and what to do about it."""


class AccountError(MmsgateError):
    """An account cannot be created, changed or deleted as asked; the message says why."""


class BodyTooLarge(MmsgateError):
    """A request body is over `limit` bytes: declared so, or counted while it streamed in."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the body is larger than {limit} bytes")


class KeyTaken(MmsgateError):
    """Another request stored this Idempotency-Key while this one was being accepted; this
    one wrote nothing, and is answered as that one's retry (api/idempotency.py)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency-Key {key!r} was stored by another request")


class ApiError(MmsgateError):
    """A request refused with a Sinch error code and an `error-info` text."""

    def __init__(self, code: ErrorCode, info: str | None = None) -> None:
        self.code = code
        self.info = info or code.text
        super().__init__(f"{code.value}: {self.info}")


class Unauthenticated(ApiError):
    """The request carries no API key, or one that belongs to no account."""


class NotFound(ApiError):
    """What the request names does not exist, or belongs to another account."""


class MediaError(ApiError):
    """A slide's media could not be fetched, is too big, or is not what it claims to be."""
