"""Prometheus metrics. Counters and histograms count what this process did (the API's
accepts and receipts, a worker's submits and postbacks); the state of the whole system
(recipients by state, queue depth and age) is read from the database when scraped, so every
process reports the same totals whichever one is asked.

`GET /metrics` on the API; `mmsgate worker --metrics-port N` for a worker of its own.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACCEPTED = Counter("mmsgate_accepted_total", "Recipients accepted through the API", ["action"])
SUBMITS = Counter("mmsgate_submits_total", "MM7 submits by route and result", ["route", "result"])
LATE_SLOTS = Counter(
    "mmsgate_late_slots_total",
    "Submits that woke too late for their rate-limit slot and took another, by route",
    ["route"],
)
SUBMIT_SECONDS = Histogram(
    "mmsgate_submit_seconds",
    "Time from SubmitReq sent to its answer, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATES = Counter("mmsgate_state_changes_total", "Recipient state changes by new state", ["state"])
RECEIPTS = Counter(
    "mmsgate_receipts_total",
    "MM7 delivery reports by MMStatus and whether applied",
    ["status", "applied"],
)
POSTBACKS = Counter("mmsgate_postbacks_total", "Postback attempts by result", ["result"])
TEMPLATES = Counter("mmsgate_templates_encoded_total", "saveMMS templates encoded", ["result"])
WORKER_HEALTHY = Gauge(
    "mmsgate_worker_healthy",
    "1 while this process's worker loop runs and its last claim succeeded, else 0",
    ["worker"],
)
WORKER_ERRORS = Counter(
    "mmsgate_worker_errors_total",
    "Queue writes of this process's worker that failed, by operation",
    ["operation"],
)
