"""The tables, as SQLAlchemy Core metadata. Migrations create exactly this (a test checks)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timestamps are always aware UTC in Python, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> object:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: object, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(8), nullable=False),
    sa.Column("postback_secret", sa.String(64), nullable=False),
    sa.Column("postback_url", sa.Text),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("senders", sa.JSON, nullable=False),
    sa.Column("service_ids", sa.JSON, nullable=False),
    sa.Column("allowed_ips", sa.JSON, nullable=False),
    sa.Column("allowed_actions", sa.JSON),
    sa.Column("max_rps", sa.Float),
    sa.Column("daily_limit", sa.Integer),
    sa.Column("api_enabled", sa.Boolean, nullable=False),
    sa.Column("mms_expiry_hours", sa.Integer),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # A PostbackFormat's value; rows made before there was a choice are XML.
    sa.Column("postback_format", sa.String(8), nullable=False, server_default="xml"),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("slides", sa.JSON, nullable=False),
    sa.Column("slide_count", sa.Integer, nullable=False),
    sa.Column("total_size", sa.Integer, nullable=False),
    sa.Column("fallback_sms_text", sa.Text),
    sa.Column("disable_fallback", sa.Boolean),
    sa.Column("disable_fallback_link", sa.Boolean),
    sa.Column("link_expires_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("deleted_at", UtcDateTime),
    sa.Column("reports", sa.JSON),
    sa.Column("client_reference", sa.String(64)),  # saveMMS's, echoed in N003/E00x
    sa.Index("ix_templates_account_listing", "account_id", "kind", "created_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("template_id", sa.Integer, sa.ForeignKey("templates.id"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("sender", sa.String(32), nullable=False),
    sa.Column("service_id", sa.String(64)),
    sa.Column("operator_id", sa.Integer),
    sa.Column("campaign_ref", sa.Text),
    sa.Column("client_reference", sa.String(64)),
    sa.Column("subject", sa.Text),
    sa.Column("custom_texts", sa.JSON),
    sa.Column("merge_data", sa.JSON),
    sa.Column("fallback_sms_text", sa.Text),
    sa.Column("disable_fallback", sa.Boolean, nullable=False),
    sa.Column("disable_fallback_link", sa.Boolean, nullable=False),
    sa.Column("link_expires_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Group members shown on the handset, never delivered to: a JSON list of MSISDNs.
    sa.Column("to_displayonly", sa.JSON),
    # The alphanumeric sender the MMSC shows instead of `sender` (at most 11 characters).
    sa.Column("sender_mask", sa.String(11)),
)

recipients = sa.Table(
    "recipients",
    metadata,
    sa.Column("tracking_id", sa.String(40), primary_key=True),
    sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("msisdn", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("sent_as", sa.String(8)),
    sa.Column("route", sa.String(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # The MMSC's MessageID from SubmitRsp: delivery reports are matched by it (never by
    # TransactionID, which only pairs a request with its response).
    sa.Column("carrier_message_id", sa.String(128)),
    sa.Column("handset", sa.Text),
    sa.Index("ix_recipients_message", "message_id"),
    sa.Index("ix_recipients_carrier_message", "carrier_message_id"),
    # GET /v1/messages: an account's recipients newest first, in keyset pages
    sa.Index("ix_recipients_account_created", "account_id", "created_at", "tracking_id"),
)

recipient_events = sa.Table(
    "recipient_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "tracking_id", sa.String(40), sa.ForeignKey("recipients.tracking_id"), nullable=False
    ),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("code", sa.String(8)),
    sa.Column("detail", sa.Text),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index("ix_recipient_events_tracking", "tracking_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("tracking_id", sa.String(40)),
    sa.Column("template_id", sa.Integer),
    sa.Column("payload", sa.JSON),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("run_at", UtcDateTime, nullable=False),
    sa.Column("lease_expires_at", UtcDateTime),
    sa.Column("locked_by", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_jobs_claim", "state", "run_at"),
)

# Each running worker's last successful claim (its beat), so any process can tell whether
# the queue is being worked: jobs due and no recent beat means no worker loop is working.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("beat_at", UtcDateTime, nullable=False),
)

media_cache = sa.Table(
    "media_cache",
    metadata,
    sa.Column("url_hash", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("blob_key", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("fetched_at", UtcDateTime, nullable=False),
)

# Transcoded parts, keyed by SHA-256 of (source blob, profile, target bytes, pipeline version).
transcodes = sa.Table(
    "transcodes",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("output_key", sa.String(64), nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Rate-limited routes: the next free send slot (Unix seconds), shared by every worker.
route_pacing = sa.Table(
    "route_pacing",
    metadata,
    sa.Column("route", sa.String(64), primary_key=True),
    sa.Column("next_slot", sa.Float, nullable=False),
)

# MMS received from handsets (MM7 DeliverReq). `token` makes the content URLs unguessable.
mo_messages = sa.Table(
    "mo_messages",
    metadata,
    sa.Column("tracking_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("sender", sa.String(32), nullable=False),
    sa.Column("recipient", sa.String(32), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("parts", sa.JSON, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Index("ix_mo_messages_token", "token", unique=True),
)

# The SMS-with-link fallback of one recipient: why, the hosted page's token and content, and
# the SMS as sent. `slides` holds what the page shows: text and parts prepared for the web
# (blob keys), in slide order.
fallbacks = sa.Table(
    "fallbacks",
    metadata,
    sa.Column(
        "tracking_id", sa.String(40), sa.ForeignKey("recipients.tracking_id"), primary_key=True
    ),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("token", sa.String(64)),  # None when the link is disabled
    sa.Column("link_expires_at", UtcDateTime, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("slides", sa.JSON, nullable=False),
    sa.Column("sms_text", sa.Text, nullable=False),
    sa.Column("sms_coding", sa.String(8), nullable=False),
    sa.Column("sms_parts", sa.Integer, nullable=False),
    # parts the SMSC has taken so far: a retried submit starts after them
    sa.Column("parts_sent", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sms_route", sa.String(64)),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("opens", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_fallbacks_token", "token", unique=True),
)

# One row per SMS part submitted: receipts name the part by the SMSC's message id.
sms_parts = sa.Table(
    "sms_parts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "tracking_id", sa.String(40), sa.ForeignKey("recipients.tracking_id"), nullable=False
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("smsc_message_id", sa.String(128), nullable=False),
    sa.Column("stat", sa.String(16)),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_sms_parts_receipt", "route", "smsc_message_id"),
    sa.Index("ix_sms_parts_tracking", "tracking_id"),
)

# The health of each MM7 route as the workers last found it, for every process to read
# (`/readyz`, `/metrics`). Written only when it changes; no row means healthy.
route_health = sa.Table(
    "route_health",
    metadata,
    sa.Column("route", sa.String(64), primary_key=True),
    sa.Column("healthy", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),  # why it is unhealthy, in words
    sa.Column("since", UtcDateTime, nullable=False),
)

# Idempotency-Key of accepted requests, per account: the fingerprint of the request that
# first used it and its answer as data (its mms-id apart: the accept assigns it), written in
# the accept's own transaction. A key binds for store.idempotency.WINDOW, then goes.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("mms_id", sa.Integer, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_idempotency_keys_created", "created_at"),
)
