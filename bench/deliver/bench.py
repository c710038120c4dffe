"""Delivery benchmark: N messages accepted through the API, delivered through the simulated
MMSC (no throughput cap), receipts applied and postbacks received, end to end.

    .venv/bin/python bench/deliver/bench.py [--messages N] [--workers W] [--postgres]
                                            [--skip-kannel]

Runs the deployment shape on loopback: `mmsgate serve`, W × `mmsgate worker`,
`mmsgate carrier-sim`, and in this process the customer's postback endpoint (which also
serves the template's photo). Prints messages/s from the first send to the last N102, the
p50/p99 of accept → N102, peak RSS of each process, then the Kannel peer run
(../shared/bench/kannel/run.sh, delivered msg/s) in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
import uvloop
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MMSGATE = [str(ROOT / ".venv" / "bin" / "mmsgate")]
KANNEL_RUN = ROOT.parent / "shared" / "bench" / "kannel" / "run.sh"
BATCH = 100  # numbers per sendSavedMMS (the API's maximum)


class Customer:
    """The customer's side: the photo the template uses, and the postback endpoint."""

    def __init__(self) -> None:
        out = io.BytesIO()
        Image.radial_gradient("L").resize((800, 600)).convert("RGB").save(out, "JPEG")
        self.photo = out.getvalue()
        self.arrived: dict[str, dict[str, float]] = {}  # tracking-id → code → time
        self.templates: dict[str, str] = {}  # mms-id → code
        self.template_done = asyncio.Event()
        self.all_delivered = asyncio.Event()
        self.expected = 0
        self.delivered = 0  # tracking ids with an N102, counted as they come

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            await _respond(send, 200, self.photo, b"image/jpeg")
            return
        self.record(body.decode())
        await _respond(send, 200, b"", b"text/plain")

    def record(self, text: str) -> None:
        code = _tag(text, "code")
        tracking_id = _tag(text, "tracking-id")
        if tracking_id is None:
            self.templates[_tag(text, "mms-id") or ""] = code or ""
            self.template_done.set()
            return
        codes = self.arrived.setdefault(tracking_id, {})
        if code == "N102" and code not in codes:
            self.delivered += 1
        codes[code or ""] = time.monotonic()
        if self.expected and self.delivered >= self.expected:
            self.all_delivered.set()


def _tag(text: str, name: str) -> str | None:
    found = re.search(f"<{name}>([^<]*)</{name}>", text)
    return found.group(1) if found else None


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", http="httptools"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    from tests import pg

    with pg.server(durable=True) as admin_url:
        asyncio.run(_durable(admin_url))
        yield pg.create_database(admin_url, "bench")


async def _durable(admin_url: str) -> None:
    """fsync on: tests.pg starts its server with fsync off whatever `durable` says, and a
    benchmark of a durable queue must pay for its fsyncs."""
    import asyncpg

    conn = await asyncpg.connect(admin_url + "/postgres")
    try:
        await conn.execute("ALTER SYSTEM SET fsync = on")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def postgres_pid(url: str | None) -> int | None:
    """The PostgreSQL server's postmaster, whose CPU (and its backends') is counted apart."""
    if url is None:
        return None
    import asyncpg

    async def ask() -> str:
        conn = await asyncpg.connect(url)
        try:
            return str(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()

    return int((Path(asyncio.run(ask())) / "postmaster.pid").read_text().split()[0])


def postgres_cpu(pid: int) -> float:
    """CPU seconds of the postmaster, its live backends and the backends it has reaped."""
    clock = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / clock  # utime stime cutime cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            child = stat.read_text().rsplit(")", 1)[1].split()
            if int(child[1]) == pid:
                total += (int(child[11]) + int(child[12])) / clock
    return total


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([*MMSGATE, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    if os.environ.get("BENCH_SYS"):
        return int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(procs: dict[str, subprocess.Popen[bytes]], pg: int | None) -> dict[str, float]:
    """CPU seconds so far of every mmsgate process, of this one (the customer and sender),
    and of PostgreSQL when it runs."""
    found = {"bench": cpu_seconds(os.getpid())}
    found |= {name: cpu_seconds(p.pid) for name, p in procs.items()}
    return found | ({"postgres": postgres_cpu(pg)} if pg else {})


def profile(procs: dict[str, subprocess.Popen[bytes]], folder: Path) -> list[Any]:
    """py-spy on every mmsgate process while messages flow: collapsed stacks, one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = ["py-spy", "record", "--nonblocking", "--gil", "-r", "200", "-f", "raw"]
    return [
        subprocess.Popen(
            [*spy, "-p", str(p.pid), "-o", str(folder / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, p in procs.items()
    ]


def peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


async def wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("mmsgate serve did not become ready")


async def send_all(
    client: httpx.AsyncClient, key: str, mms_id: str, count: int
) -> dict[str, float]:
    """sendSavedMMS in batches of 100 numbers, 8 at a time; accept time per tracking-id."""
    accepted: dict[str, float] = {}
    numbers = [f"1774{200 + n // 10_000}{n % 10_000:04d}" for n in range(count)]
    numbers = [
        n
        if not n.endswith(("0002", "0003", "0005", "0006", "0007", "0008", "0009"))
        else n[:-4] + "1111"
        for n in numbers
    ]  # fmt: skip  (no scripted fates)
    batches = [numbers[i : i + BATCH] for i in range(0, count, BATCH)]
    gate = asyncio.Semaphore(8)

    async def one(batch: list[str]) -> None:
        body = (
            f"<request><action>sendSavedMMS</action><api-key>{key}</api-key>"
            f"<mms-id>{mms_id}</mms-id><to>{','.join(batch)}</to><from>28444</from>"
            "<fallback-sms-text>See</fallback-sms-text></request>"
        )
        async with gate:
            response = await client.post("/ep/v1/", content=body)
        now = time.monotonic()
        for tracking_id in re.findall(r"<tracking-id>([^<]+)</tracking-id>", response.text):
            accepted[tracking_id] = now

    await asyncio.gather(*(one(b) for b in batches))
    return accepted


def setup(
    work: Path, database_url: str | None, max_mps: float | None
) -> tuple[dict[str, int], dict[str, str], str]:
    """Ports, the environment every mmsgate process shares, and the bench account's key."""
    from tests.ports import free_ports

    names = ("api", "sim", "hook")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    config = work / "mmsgate.toml"
    concurrency = os.environ.get("BENCH_WORKER_CONCURRENCY")  # else the default, 256
    config.write_text(
        f'simulator_url = "http://127.0.0.1:{ports["sim"]}/mm7"\n'
        + (f"worker_concurrency = {int(concurrency)}\n" if concurrency else "")
        + '[[routes]]\nname = "sim"\nkind = "simulator"\ndefault = true\n'
        + (f"max_mps = {max_mps}\n" if max_mps else "")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    env |= {"MMSGATE_DATA_DIR": str(work / "data"), "MMSGATE_CONFIG": str(config)}
    env["MMSGATE_ALLOW_PRIVATE_NETWORKS"] = "1"
    # The pair carrier-sim presents on /mm7 and the sim route accepts.
    env["MMSGATE_SIMULATOR_INBOUND_USERNAME"] = "bench-mmsc"
    env["MMSGATE_SIMULATOR_INBOUND_PASSWORD"] = "bench-secret"  # noqa: S105 - loopback only
    if database_url:
        env["MMSGATE_DATABASE_URL"] = database_url
    subprocess.run([*MMSGATE, "migrate"], env=env, check=True, capture_output=True)
    hook = f"http://127.0.0.1:{ports['hook']}/hook"
    created = subprocess.run(
        [*MMSGATE, "accounts", "create", "bench", "--sender", "28444", "--postback-url", hook,
         "--max-rps", "100000", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return ports, env, json.loads(created.stdout)["api_key"]


async def run(
    args: argparse.Namespace, work: Path, ports: dict[str, int], env: dict[str, str], key: str
) -> None:
    customer = Customer()
    customer.expected = args.messages
    report_url = f"http://127.0.0.1:{ports['api']}/mm7"
    procs = {
        "carrier-sim": start(["carrier-sim", "--port", str(ports["sim"]), "--report-url",
                              report_url, "--log-level", "warning"], env, work / "sim.log"),
        "serve": start(["serve", "--port", str(ports["api"]), "--log-level", "warning"], env,
                       work / "serve.log"),
    }  # fmt: skip
    for n in range(args.workers):
        procs[f"worker{n + 1}"] = start(
            ["worker", "--log-level", "warning"], env, work / f"worker{n + 1}.log"
        )
    try:
        async with (
            serving(customer, ports["hook"]),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}", timeout=60) as client,
        ):
            await wait_ready(client)
            save = (
                f"<request><action>saveMMS</action><api-key>{key}</api-key><name>bench</name>"
                f"<slide><image><url>http://127.0.0.1:{ports['hook']}/p.jpg</url></image>"
                "<message-text>Hello from the benchmark</message-text></slide></request>"
            )
            mms_id = _tag((await client.post("/ep/v1/", content=save)).text, "mms-id") or ""
            await asyncio.wait_for(customer.template_done.wait(), 60)
            if customer.templates.get(mms_id) != "N003":
                raise SystemExit(f"template {mms_id}: {customer.templates}")
            profilers = profile(procs, args.profile) if args.profile else []
            cpu_before = cpu_of(procs, args.pg_pid)
            started = time.monotonic()
            accepted = await send_all(client, key, mms_id, args.messages)
            sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(customer.all_delivered.wait(), args.timeout)
            cpu = {k: v - cpu_before[k] for k, v in cpu_of(procs, args.pg_pid).items()}
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
            report(args, customer, accepted, started, sent, procs)
            report_cpu(cpu, customer)
            scrape = (await client.get("/metrics")).text
            receipts = re.findall(r"^mmsgate_receipts_total\{([^}]*)\} (\S+)", scrape, re.M)
            print(
                "  receipts at /mm7: "
                + ", ".join(f"{labels} {value}" for labels, value in receipts)
            )
    finally:
        for process in procs.values():
            process.terminate()
        for process in procs.values():
            process.wait(timeout=60)


def report(
    args: argparse.Namespace,
    customer: Customer,
    accepted: dict[str, float],
    started: float,
    sent: float,
    procs: dict[str, subprocess.Popen[bytes]],
) -> None:
    delivered = {t: c["N102"] for t, c in customer.arrived.items() if "N102" in c}
    n101 = sum(1 for c in customer.arrived.values() if "N101" in c)
    last = max(delivered.values(), default=started)
    latencies = sorted((delivered[t] - accepted[t]) * 1000 for t in delivered if t in accepted)
    rate = len(delivered) / (last - started) if delivered else 0.0
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"mmsgate deliver ({backend}, {args.workers} worker(s)): {len(accepted)} accepted "
          f"in {sent - started:.1f}s; {n101} N101, {len(delivered)} N102 received")  # fmt: skip
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"  end to end {rate:.0f} MMS/s; accept→N102 p50 "
              f"{statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms")  # fmt: skip
    rss = ", ".join(f"{name} {peak_rss_mb(p):.0f} MB" for name, p in procs.items())
    print(f"  peak RSS: {rss}")


def report_cpu(cpu: dict[str, float], customer: Customer) -> None:
    """CPU milliseconds per delivered message, summed over every process, and by process."""
    delivered = sum(1 for c in customer.arrived.values() if "N102" in c) or 1
    ours = {name: s for name, s in cpu.items() if name != "postgres"}
    parts = ", ".join(f"{name} {1000 * s / delivered:.2f}" for name, s in ours.items())
    print(f"  CPU per message: {1000 * sum(ours.values()) / delivered:.2f} ms ({parts})")
    if "postgres" in cpu:
        print(f"  PostgreSQL server CPU per message: {1000 * cpu['postgres'] / delivered:.2f} ms")


async def submit_times(url: str) -> list[float]:
    """When each recipient entered `submitted` (the MMSC's answer recorded), in order."""
    from mmsgate.settings import normalize_database_url
    from mmsgate.store.db import Database
    from mmsgate.store.schema import recipient_events

    db = Database(normalize_database_url(url))
    try:
        async with db.read() as conn:
            query = sa.select(recipient_events.c.at).where(recipient_events.c.state == "submitted")
            times = sorted((await conn.scalars(query)).all())
    finally:
        await db.close()
    return [t.timestamp() for t in times]


def report_pacing(times: list[float], max_mps: float) -> None:
    """The submit rate over the run, and over each tenth of it (a stall shows there)."""
    if len(times) < 20:
        print(f"  route limit {max_mps:g}/s: too few submits to judge")
        return
    rate = (len(times) - 1) / (times[-1] - times[0])
    step = len(times) // 10
    chunks = [times[n : n + step] for n in range(0, step * 10, step)]
    tenths = [(len(c) - 1) / (c[-1] - c[0]) for c in chunks]
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(f"  route limit {max_mps:g}/s: submits went out at {rate:.1f}/s "
          f"({100 * (rate / max_mps - 1):+.1f} %); by tenths "
          + " ".join(f"{r:.0f}" for r in tenths)
          + f"; longest gap {1000 * gap:.0f} ms")  # fmt: skip


def kannel_peer() -> None:
    if not KANNEL_RUN.exists():
        print(f"Kannel peer script not found at {KANNEL_RUN}")
        return
    done = subprocess.run(
        [str(KANNEL_RUN), "10", "32"], capture_output=True, text=True, check=False
    )
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    print(f"peer: {line}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--skip-kannel", action="store_true")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--max-mps", type=float, default=None, help="Limit the route.")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy stacks to this folder.")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mmsgate-deliver-") as tmp,
        database(args.postgres) as url,
    ):
        ports, env, key = setup(Path(tmp), url, args.max_mps)
        args.pg_pid = postgres_pid(url)
        uvloop.run(run(args, Path(tmp), ports, env, key))
        if args.max_mps:
            where = url or f"sqlite:///{Path(tmp) / 'data' / 'mmsgate.db'}"
            report_pacing(asyncio.run(submit_times(where)), args.max_mps)
    if not args.skip_kannel:
        kannel_peer()


if __name__ == "__main__":
    main()
