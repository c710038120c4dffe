"""Run schemathesis against a real `mmsgate run`: every operation of /openapi.json, a seeded,
bounded budget, failing on a server error or an answer that does not match its schema.

    scripts/schemathesis [--cases 2000] [--seed 20261207] [--keep DIR] [--database-url URL]

It starts `mmsgate run` on a free loopback port with a fresh data dir (its SQLite, or the
PostgreSQL database given, which it migrates), creates an account,
sends it a few messages (delivered, rejected, one that falls back to SMS) so the listing and
status answers hold real items, then runs schemathesis with that account's key. The same
seed gives the same cases. Exit status: schemathesis's (0: no failure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

# The server start and stop the end-to-end tests use (tests/e2e/startup.py), from the
# checkout this script is in: it runs as `python scripts/schemathesis.py`, which puts only
# scripts/ on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.startup import env as user_env
from tests.e2e.startup import healthy, stopped_after
from tests.ports import free_port

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "ignored_auth",
    "missing_required_header",
)
OPERATIONS = 4  # in /openapi.json: the budget is shared between them
SENDER = "28444"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# The simulator's fates by the number's last four digits (README, Carrier simulator).
NUMBERS = ("17745550100", "17745550009", "17745550005", "17745550101,17745550102")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="test cases over all operations")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--keep", type=Path, help="data dir to use and keep (default: a temp one)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    with _data_dir(args.keep) as data:
        return run(data, cases=args.cases, seed=args.seed, database_url=args.database_url)


def run(data: Path, *, cases: int, seed: int, database_url: str | None = None) -> int:
    """The schemathesis run against a `mmsgate run` on `data`; its exit status."""
    env = user_env(**({"MMSGATE_DATABASE_URL": database_url} if database_url else {}))
    # The account before the server: `run` makes its demo account only in an empty database.
    _mmsgate(data, env, "migrate")
    key = json.loads(
        _mmsgate(data, env, "accounts", "create", "fuzz", "--sender", SENDER, "--json")
    )
    port = free_port()
    with stopped_after(_start(data, port, env)) as server:
        base = f"http://127.0.0.1:{port}"
        if not healthy(base, server):
            raise SystemExit("scripts/schemathesis: mmsgate run did not come up (see server.log)")
        _seed_messages(base, str(key["api_key"]))
        return _schemathesis(base, str(key["api_key"]), cases=cases, seed=seed, data=data)


def _start(data: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`mmsgate run` on `port`, its output in DATA/server.log."""
    with (data / "server.log").open("w") as log:
        return subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "mmsgate", "run", "--port", str(port), "--data-dir", str(data)],
            env=env,
            stdout=log,
            stderr=log,
        )


def _schemathesis(base: str, key: str, *, cases: int, seed: int, data: Path) -> int:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base}/openapi.json",
        "--header",
        f"x-api-key: {key}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max(1, cases // OPERATIONS)),
        "--seed",
        str(seed),
        "--generation-database",
        "none",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "2",
        "--no-color",
    ]
    print("scripts/schemathesis:", " ".join(command[3:]).replace(key, "KEY"), flush=True)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    # In the data dir: schemathesis keeps a cache of what it found in its working directory.
    done = subprocess.run(command, env=env, cwd=data, check=False)  # noqa: S603 - our own
    return done.returncode


def _mmsgate(data: Path, env: dict[str, str], *args: str) -> str:
    """What `mmsgate ARGS --data-dir DATA` prints; a failure ends the script."""
    done = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "mmsgate", *args, "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/schemathesis: mmsgate {args[0]} failed: {done.stderr}")
    return done.stdout


def _seed_messages(base: str, key: str) -> None:
    """A template and sends whose recipients end delivered, rejected and in SMS fallback."""
    with httpx.Client(base_url=base, timeout=30) as client:
        save = (
            f"<request><action>saveMMS</action><api-key>{key}</api-key><name>fuzz</name>"
            "<slide><message-text>Hello</message-text></slide></request>"
        )
        mms_id = client.post("/ep/v1/", content=save).text.split("<mms-id>")[1].split("<")[0]
        for number in NUMBERS:
            send = (
                f"<request><action>sendSavedMMS</action><api-key>{key}</api-key>"
                f"<mms-id>{mms_id}</mms-id><to>{number}</to><from>{SENDER}</from>"
                "<client-reference>fuzz</client-reference>"
                "<fallback-sms-text>See it</fallback-sms-text></request>"
            )
            answer = client.post("/ep/v1/", content=send).text
            assert "<status>Success</status>" in answer, answer
        _wait_for_fallback(client, key)


def _wait_for_fallback(client: httpx.Client, key: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = client.get("/v1/messages", headers={"x-api-key": key}).json()
        if any(item["fallback"] for item in page["messages"]):
            return
        time.sleep(0.2)
    raise SystemExit("scripts/schemathesis: the fallback send never reached its SMS")


@contextlib.contextmanager
def _data_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="mmsgate-schemathesis-") as temp:
        yield Path(temp)


if __name__ == "__main__":
    sys.exit(main())
