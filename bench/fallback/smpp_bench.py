"""Fallback SMS benchmark: N SMS through one SmppConnector bind to the simulated SMSC.

    .venv/bin/python bench/fallback/smpp_bench.py [--messages N] [--window W]
        [--concurrency C] [--parts P] [--same-process] [--no-peer] [--timeout S] [--json]

The SMSC (`mmsgate.sim.smsc.Smsc`, receipts at once) runs in a child process on loopback, as
an SMSC is another machine, so each side's CPU is measured on its own; `--same-process` puts
both in one event loop. C coroutines submit N SMS (P parts each) through one bind with a
window of W; the sink counts receipts. Prints submits/s (submit_sm answered), receipts/s (all
receipts in the sink), CPU seconds per 1,000 SMS and the peak RSS of each process.

The peer, run alongside against a fresh SMSC of its own: smpp34's Rust-core ESME (the
library whose codec the connector uses) sending the same single-part SMS through one bind
with the same window; the ratio is ours over it. The machine may be shared, so CPU per
1,000 SMS is the steadier figure. Bounded: N SMS each, `--timeout` seconds per run at most
(exit 1 if it runs out).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import smpp34  # noqa: E402

from mmsgate.carriers.base import SmsReceipt, SmsSubmit  # noqa: E402
from mmsgate.carriers.smpp import SmppConnector  # noqa: E402
from mmsgate.logs import configure as configure_logs  # noqa: E402
from mmsgate.settings import SmsRoute  # noqa: E402
from mmsgate.sim.smsc import Smsc  # noqa: E402
from mmsgate.sms_text import encode_part, segment  # noqa: E402

TEXT = (
    "Your picture message could not be shown on this phone. See it here: "
    "https://mms.example.com/m/Qm9vbGVhbkxpbmtUb2tlbjEyMw"
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def recipient(n: int) -> str:
    return f"1774556{1000 + n % 9000:04d}"  # never one of the simulator's scripted endings


# --- the SMSC side --------------------------------------------------------------------------


def smsc_process(pipe: multiprocessing.connection.Connection) -> None:
    """Child: run the simulated SMSC until told to stop, then report its counts and costs."""
    asyncio.run(_smsc_main(pipe))


async def _smsc_main(pipe: multiprocessing.connection.Connection) -> None:
    configure_logs(level="warning")
    smsc = Smsc(report_delay=0.0)
    pipe.send(await smsc.start("127.0.0.1", 0))
    cpu = time.process_time()
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    stats = {"cpu_s": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb(), **smsc.counts}
    await smsc.stop()
    pipe.send(stats)


@dataclasses.dataclass
class SmscHandle:
    port: int
    finish: Callable[[], Awaitable[dict[str, Any]]]


async def start_smsc(same_process: bool) -> SmscHandle:
    loop = asyncio.get_running_loop()
    if same_process:
        local = Smsc(report_delay=0.0)
        port = await local.start("127.0.0.1", 0)

        async def finish_local() -> dict[str, Any]:
            await local.stop()
            return {"in_process": True, **local.counts}

        return SmscHandle(port, finish_local)
    spawn = multiprocessing.get_context("spawn")
    pipe, child_end = spawn.Pipe()
    child = spawn.Process(target=smsc_process, args=(child_end,), daemon=True)
    child.start()

    async def finish_child() -> dict[str, Any]:
        pipe.send("stop")
        stats: dict[str, Any] = await loop.run_in_executor(None, pipe.recv)
        child.join(10)
        return stats

    return SmscHandle(await loop.run_in_executor(None, pipe.recv), finish_child)


# --- one run --------------------------------------------------------------------------------


class Receipts:
    """The sink: counts receipts, notes when the last one came."""

    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.all_in = asyncio.Event()
        self.last_at = 0.0

    async def __call__(self, receipt: SmsReceipt) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.last_at = time.perf_counter()
            self.all_in.set()


async def measure(
    args: argparse.Namespace,
    submit: Callable[[int], Awaitable[str]],
    receipts: Receipts,
) -> dict[str, Any]:
    """Run C submitters over N SMS, then wait for every receipt; time and CPU of it all."""
    outcomes = {"accepted": 0, "transient": 0, "failed": 0}
    numbers = iter(range(args.messages))

    async def submitter() -> None:
        for n in numbers:
            outcomes[await submit(n)] += 1

    cpu = time.process_time()
    started = time.perf_counter()
    timed_out = False
    try:
        async with asyncio.timeout(args.timeout):
            await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
            submitted_at = time.perf_counter()
            await receipts.all_in.wait()
    except TimeoutError:
        timed_out = True
        submitted_at = receipts.last_at = time.perf_counter()
    cpu_used = time.process_time() - cpu
    done = outcomes["accepted"]
    submit_s = submitted_at - started
    receipt_s = receipts.last_at - started
    return {
        "timed_out": timed_out,
        **outcomes,
        "submit_s": round(submit_s, 3),
        "sms_per_s": round(done / submit_s, 1),
        "receipts": receipts.count,
        "receipts_per_s": round(receipts.count / receipt_s, 1),
        "cpu_s": round(cpu_used, 3),
        "cpu_s_per_1000_sms": round(cpu_used / max(done, 1) * 1000, 4),
    }


async def run_connector(args: argparse.Namespace) -> dict[str, Any]:
    smsc = await start_smsc(args.same_process)
    seg = segment(TEXT * args.parts if args.parts > 1 else TEXT)
    receipts = Receipts(args.messages * seg.count)
    route = SmsRoute(
        name="bench",
        kind="smpp",
        host="127.0.0.1",
        port=smsc.port,
        system_id="bench",
        window=args.window,
    )
    connector = SmppConnector(route, receipts)
    async with asyncio.timeout(30):
        await connector.wait_bound()

    async def submit(n: int) -> str:
        sms = SmsSubmit(f"b{n}", "28444", recipient(n), seg.coding, seg.parts, n % 256)
        result = await connector.submit(sms)
        return "accepted" if result.accepted else "transient" if result.transient else "failed"

    figures = await measure(args, submit, receipts)
    await connector.close()
    smsc_stats = await smsc.finish()
    if "cpu_s" in smsc_stats:
        per_1000 = smsc_stats["cpu_s"] / max(figures["accepted"], 1) * 1000
        smsc_stats["cpu_s_per_1000_sms"] = round(per_1000, 4)
    figures["parts_per_sms"] = seg.count
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return {**figures, "smsc": smsc_stats}


async def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """smpp34's own ESME (Rust session, acknowledges receipts itself) on the same workload."""
    smsc = await start_smsc(args.same_process)
    client = smpp34.Client(
        "127.0.0.1", smsc.port, "peer", "", bind_type="TRX", window_size=args.window
    )
    async with asyncio.timeout(30):
        session = await client.connect()
    receipts = Receipts(args.messages)
    body = encode_part(TEXT, "gsm7")

    async def read_receipts() -> None:
        while receipts.count < receipts.expected:
            event = await session.next()
            if not isinstance(event, smpp34.DeliverSmEvent):
                return
            await receipts(None)  # type: ignore[arg-type]

    reader = asyncio.create_task(read_receipts())

    async def submit(n: int) -> str:
        try:
            resp = await session.submit_sm(
                recipient(n),
                body,
                source_addr="28444",
                source_addr_ton=3,
                dest_addr_ton=1,
                dest_addr_npi=1,
                registered_delivery=1,
            )
        except smpp34.SmppError:
            return "failed"
        return "accepted" if resp.is_success else "failed"

    # Its Python client fails a request (ESME_RSYSERR) rather than wait when more than its
    # window are in flight, so it gets no more submitters than its window.
    peer_args = argparse.Namespace(
        **{**vars(args), "concurrency": min(args.concurrency, args.window)}
    )
    figures = await measure(peer_args, submit, receipts)
    reader.cancel()
    await session.unbind()
    await client.stop()
    await smsc.finish()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=128, help="submitting coroutines")
    parser.add_argument("--parts", type=int, default=1, help="about this many parts per SMS")
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="skip the smpp34 peer run")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logs(level="warning")
    ours = asyncio.run(run_connector(args))
    peer = None if args.no_peer or args.parts > 1 else asyncio.run(run_peer(args))
    result = {
        "messages": args.messages,
        "window": args.window,
        "concurrency": args.concurrency,
        "same_process": args.same_process,
        "mmsgate": ours,
        "peer_smpp34": peer,
        "ratio_sms_per_s": round(ours["sms_per_s"] / peer["sms_per_s"], 3) if peer else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(args, result)
    return 1 if ours["timed_out"] or (peer and peer["timed_out"]) else 0


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    ours, peer = result["mmsgate"], result["peer_smpp34"]
    where = "in this process" if args.same_process else "in a child process"
    cpu_of = "connector + SMSC" if args.same_process else "connector"
    print(
        f"{ours['accepted']} of {args.messages} SMS ({ours['parts_per_sms']} part(s) each) "
        f"over one bind, window {args.window}, {args.concurrency} submitters, SMSC {where}"
    )
    print(
        f"  submits:   {ours['sms_per_s']} SMS/s "
        f"({ours['sms_per_s'] * ours['parts_per_sms']:.0f} submit_sm/s), "
        f"transient {ours['transient']}, failed {ours['failed']}"
    )
    print(f"  receipts:  {ours['receipts']} in the sink, {ours['receipts_per_s']}/s")
    print(
        f"  {cpu_of}: {ours['cpu_s_per_1000_sms']} CPU s per 1,000 SMS, "
        f"peak RSS {ours['peak_rss_mb']} MB"
    )
    smsc = ours["smsc"]
    if "cpu_s" in smsc:
        print(
            f"  SMSC:      {smsc['cpu_s_per_1000_sms']} CPU s per 1,000 SMS, "
            f"peak RSS {smsc['peak_rss_mb']:.1f} MB"
        )
    if peer:
        print(
            f"  peer smpp34 ESME: {peer['sms_per_s']} SMS/s, {peer['receipts_per_s']} receipts/s, "
            f"{peer['cpu_s_per_1000_sms']} CPU s per 1,000 SMS; "
            f"ratio mmsgate/peer {result['ratio_sms_per_s']}"
        )


if __name__ == "__main__":
    sys.exit(main())
