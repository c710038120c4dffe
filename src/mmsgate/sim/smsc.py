"""A simulated SMSC speaking SMPP 3.4, the far end of the fallback SMS leg.

It takes binds (checking system_id and password when given), answers submit_sm and
enquire_link, and sends one delivery receipt per accepted part, as a real SMSC does, with the
`receipted_message_id`/`message_state` TLVs and the Appendix B text. What happens is scripted
by the last four digits of the recipient (`OUTCOMES`, and the README's table):

| ends in | submit_sm_resp | receipt |
|---|---|---|
| 0002 | ESME_RINVDSTADR (0x0B) | none |
| 0003 | accepted | EXPIRED |
| 0006 | accepted | none |
| 0008 | accepted | UNDELIV, err 001 |
| 0010 | ESME_RTHROTTLED twice, then accepted | DELIVRD |
| 0011 | ESME_RTHROTTLED to the first submit of part 2 of a long SMS | DELIVRD |
| anything else | accepted | DELIVRD |

Receipts are owed to a system_id, not to a connection: those that could not be delivered
wait for its next bind, as real SMSCs hold them. One the ESME answers with an error is offered
again, 10 ms doubling to 5 s later, and dropped after `MAX_REFUSALS`. For tests it can drop
every connection, hold its answers to submit_sm, and hold receipts. It spells message ids as
`smsc_ids` says: in the bases Kannel's msg-id-type describes, or the receipt text's and the TLV's
each its own way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import socket
from collections.abc import Callable

import smpp34
import structlog

from mmsgate.carriers import smpp_pdu as wire
from mmsgate.carriers.smpp_receipt import STAT_STATE, format_receipt_text
from mmsgate.sim.smsc_ids import IdSpelling
from mmsgate.sms_text import Coding, Concat, decode_part, encode_part, is_gsm7, split_udh

log = structlog.get_logger(__name__)

# last four digits → (the answer to submit_sm, the receipt's stat or None, its err)
OUTCOMES: dict[str, tuple[str, str | None, int]] = {
    "0002": ("refuse", None, 0),
    "0003": ("accept", "EXPIRED", 0),
    "0006": ("accept", None, 0),
    "0008": ("accept", "UNDELIV", 1),
    "0010": ("throttle-twice", "DELIVRD", 0),
    "0011": ("throttle-part-2-once", "DELIVRD", 0),
}
DEFAULT = ("accept", "DELIVRD", 0)
MAX_REFUSALS = 20  # a deliver_sm refused this often is dropped, as SMSCs give up in the end
CODINGS: dict[int, Coding] = {0: "gsm7", 8: "ucs2"}
RECEIVES = frozenset((wire.BIND_TRANSCEIVER, wire.BIND_RECEIVER))  # who is sent deliver_sm
TRANSMITS = frozenset((wire.BIND_TRANSCEIVER, wire.BIND_TRANSMITTER))  # who may submit


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """One submit_sm as the simulated SMSC read it, and what it answered."""

    system_id: str
    sender: str
    source_ton: int
    source_npi: int
    recipient: str
    dest_ton: int
    dest_npi: int
    coding: str  # gsm7, ucs2, or dcN for another data_coding
    esm_class: int
    registered_delivery: int
    concat: Concat | None  # from the UDH, when esm_class has UDHI
    text: str
    status: int
    message_id: str | None  # as sent in submit_sm_resp; None when refused


@dataclasses.dataclass(slots=True)
class _Owed:
    """A deliver_sm owed to a system_id: a receipt (esm_class 0x04) or an MO message."""

    source: str
    dest: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: list[smpp34.Tlv]
    refusals: int = 0

    def encode(self, seq: int) -> bytes:
        return smpp34.DeliverSm(
            self.source,
            self.dest,
            self.short_message,
            source_addr_ton=1,
            source_addr_npi=1,
            esm_class=self.esm_class,
            data_coding=self.data_coding,
            tlvs=self.tlvs,
            sequence_number=seq,
        ).encode()


@dataclasses.dataclass(slots=True)
class _Outbox:
    queue: collections.deque[_Owed] = dataclasses.field(default_factory=collections.deque)
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


@dataclasses.dataclass(eq=False, slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    window: asyncio.Semaphore
    system_id: str = ""
    bind: int = 0  # the bind command it bound with; 0 before
    seq: int = 0
    open: bool = True
    delivering: dict[int, _Owed] = dataclasses.field(default_factory=dict)
    held: list[tuple[int, smpp34.SubmitSm]] = dataclasses.field(default_factory=list)
    sender: asyncio.Task[None] | None = None

    def send(self, command_id: int, status: int, seq: int, body: bytes = b"") -> None:
        if self.open:
            self.writer.write(wire.pdu(command_id, status, seq, body))

    def next_seq(self) -> int:
        self.seq = self.seq % 0x7FFFFFFF + 1
        return self.seq


class Smsc:
    """The simulated SMSC; `start()` it, point an SmppConnector at `port`."""

    def __init__(
        self,
        system_id: str | None = None,
        password: str | None = None,
        report_delay: float = 0.05,
        *,
        msg_id_type: int | None = None,
        text_id_base: int | None = None,
        tlv_id_base: int | None = None,
        first_id: int = 0x2A000001,
        receipt_tlvs: bool = True,
        receipt_seconds: bool = False,
        deliver_window: int = 32,
        name: str = "mmsgate-sim",
        keep: int = 10_000,
    ) -> None:
        self.system_id = system_id  # None: any system_id binds
        self.password = password  # None: any password
        self.report_delay = report_delay
        # How it writes message ids (smsc_ids: Kannel's msg-id-type meaning, and hostile bases).
        self.ids = IdSpelling(msg_id_type, text_id_base, tlv_id_base)
        self.receipt_tlvs = receipt_tlvs  # False: the receipt text alone, as older SMSCs send
        self.receipt_seconds = receipt_seconds  # 12-digit dates in the receipt text
        self.deliver_window = deliver_window
        self.name = name
        self.port = 0
        # The submits, newest last; the oldest are forgotten past 2 × keep, as `carrier-sim`
        # may run for days.
        self.submitted: list[Submitted] = []
        self.keep = keep
        self.counts: collections.Counter[str] = collections.Counter()
        self.tries: collections.Counter[str] = collections.Counter()  # submits per recipient
        self._ids = itertools.count(first_id)  # 0x12345678 gives hex ids of digits alone
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._outboxes: dict[str, _Outbox] = collections.defaultdict(_Outbox)
        self._holding_answers = False
        self._holding_receipts = False
        self._changed = asyncio.Event()
        self._stopped = False

    # --- the public face ----------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
    ) -> int:
        """Listen on host:port, or on `sock` bound already; returns the port (also `port`)."""
        if sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=sock)
        else:
            self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("sim.smsc_listening", host=host, port=self.port)
        return self.port

    async def stop(self) -> None:
        self._stopped = True  # receipts still on their timers are dropped with the SMSC
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        # Let each connection's task see its end: on 3.11 a connection task still running when
        # the loop closes is cancelled, and asyncio's stream callback logs that as an error.
        await asyncio.gather(*self._serving, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def drop_connections(self) -> int:
        """Cut every connection without unbind, as a network failure would; answers held for
        them are discarded and receipts in flight are owed again. Returns how many."""
        dropped = list(self._connections)
        for conn in dropped:
            conn.writer.transport.abort()
            self._closed(conn)
        self.counts["drops"] += len(dropped)
        return len(dropped)

    def hold_answers(self, hold: bool = True) -> None:
        """Read submit_sm but answer none until released (for a window full of them)."""
        self._holding_answers = hold
        if not hold:
            for conn in list(self._connections):
                held, conn.held = conn.held, []
                for seq, submit in held:
                    self._answer(conn, seq, submit)

    def hold_receipts(self, hold: bool = True) -> None:
        """Keep receipts owed instead of sending them, until released."""
        self._holding_receipts = hold
        if not hold:
            for box in self._outboxes.values():
                box.ready.set()

    def deliver_mo(self, system_id: str, sender: str, recipient: str, text: str) -> None:
        """Send a mobile-originated text to that system_id (a deliver_sm that is no receipt)."""
        coding: Coding = "gsm7" if is_gsm7(text) else "ucs2"
        data_coding = 0 if coding == "gsm7" else 8
        self._owe(
            system_id, _Owed(sender, recipient, 0, data_coding, encode_part(text, coding), [])
        )

    def owed(self, system_id: str) -> int:
        """Receipts and MO waiting for that system_id (not counting those in flight)."""
        return len(self._outboxes[system_id].queue) if system_id in self._outboxes else 0

    @property
    def held(self) -> int:
        """submit_sm read but not yet answered (see `hold_answers`)."""
        return sum(len(conn.held) for conn in self._connections)

    @property
    def bound(self) -> int:
        return sum(1 for conn in self._connections if conn.bind)

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, checked after every event (bound it with
        `asyncio.timeout`)."""
        while True:
            self._changed.clear()
            if predicate():
                return
            await self._changed.wait()

    # --- a connection -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer, asyncio.Semaphore(self.deliver_window))
        self._connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        try:
            while conn.open:
                frame = await wire.read_frame(reader)
                self._dispatch(conn, frame)
                self._changed.set()
        except (asyncio.IncompleteReadError, ConnectionError, wire.PduError):
            pass
        finally:
            self._closed(conn)
            writer.close()

    def _dispatch(self, conn: _Connection, frame: wire.Frame) -> None:
        command = frame.command_id
        if command & wire.RESPONSE:
            self._on_response(conn, frame)
        elif command == wire.ENQUIRE_LINK:
            self.counts["enquire_links"] += 1
            conn.send(command | wire.RESPONSE, 0, frame.seq)
        elif command in wire.BINDS:
            self._on_bind(conn, frame)
        elif not conn.bind:
            conn.send(command | wire.RESPONSE, wire.ESME_RINVBNDSTS, frame.seq)
        elif command == wire.SUBMIT_SM:
            self._on_submit(conn, frame)
        elif command == wire.UNBIND:
            self.counts["unbinds"] += 1
            conn.send(command | wire.RESPONSE, 0, frame.seq)
            self._closed(conn)
        else:
            conn.send(wire.GENERIC_NACK, wire.ESME_RINVCMDID, frame.seq)

    def _on_bind(self, conn: _Connection, frame: wire.Frame) -> None:
        resp = frame.command_id | wire.RESPONSE
        try:
            bind = wire.decode_bind(frame.body)
        except wire.PduError:
            conn.send(resp, wire.ESME_RINVCMDLEN, frame.seq)
            return
        status = wire.ESME_ROK
        if conn.bind:
            status = wire.ESME_RALYBND
        elif self.system_id is not None and bind.system_id != self.system_id:
            status = wire.ESME_RINVSYSID
        elif self.password is not None and bind.password != self.password:
            status = wire.ESME_RINVPASWD
        if status:
            self.counts["binds_refused"] += 1
            conn.send(resp, status, frame.seq)
            return
        conn.bind, conn.system_id = frame.command_id, bind.system_id
        self.counts["binds"] += 1
        conn.send(resp, 0, frame.seq, wire.encode_bind_resp(self.name))
        if frame.command_id in RECEIVES:
            conn.sender = asyncio.get_running_loop().create_task(self._deliver(conn))
        log.info("sim.smsc_bound", system_id=bind.system_id, version=hex(bind.interface_version))

    def _closed(self, conn: _Connection) -> None:
        """The connection is gone (or going): owed deliver_sm in flight go back first in line."""
        if not conn.open:
            return
        conn.open = False
        self._connections.discard(conn)
        if conn.sender is not None:
            conn.sender.cancel()
        if conn.delivering:
            box = self._outboxes[conn.system_id]
            box.queue.extendleft(reversed(conn.delivering.values()))
            box.ready.set()
            conn.delivering.clear()
        self.counts["discarded"] += len(conn.held)
        conn.held.clear()
        conn.writer.close()
        self._changed.set()

    # --- submit_sm ----------------------------------------------------------------------

    def _on_submit(self, conn: _Connection, frame: wire.Frame) -> None:
        self.counts["submits"] += 1
        if conn.bind not in TRANSMITS:
            conn.send(wire.SUBMIT_SM | wire.RESPONSE, wire.ESME_RINVBNDSTS, frame.seq)
            return
        try:
            submit = smpp34.decode(frame.raw)
        except smpp34.SmppError:
            submit = None
        if not isinstance(submit, smpp34.SubmitSm):
            conn.send(wire.SUBMIT_SM | wire.RESPONSE, wire.ESME_RSYSERR, frame.seq)
            return
        if self._holding_answers:
            conn.held.append((frame.seq, submit))
        else:
            self._answer(conn, frame.seq, submit)

    def _answer(self, conn: _Connection, seq: int, submit: smpp34.SubmitSm) -> None:
        number = submit.destination_addr
        answer, stat, err = OUTCOMES.get(number[-4:], DEFAULT)
        self.tries[number] += 1
        status = wire.ESME_ROK
        if answer == "refuse":
            status = wire.ESME_RINVDSTADR
        elif answer == "throttle-twice" and self.tries[number] <= 2:
            status = wire.ESME_RTHROTTLED
        elif answer == "throttle-part-2-once" and _part_of(submit) == 2:
            self.tries[f"{number}/2"] += 1
            if self.tries[f"{number}/2"] == 1:
                status = wire.ESME_RTHROTTLED
        serial = next(self._ids) if status == wire.ESME_ROK else None
        message_id = None if serial is None else self.ids.submit(serial)
        record = _read(conn.system_id, submit, status, message_id)
        self.submitted.append(record)
        if len(self.submitted) >= 2 * self.keep:
            del self.submitted[: self.keep]
        self.counts["accepted" if serial is not None else "refused"] += 1
        conn.send(wire.SUBMIT_SM | wire.RESPONSE, status, seq, wire.cstring(message_id or ""))
        if serial is not None and stat is not None and submit.registered_delivery & 0x03:
            owed = self._receipt(record, serial, stat, err)
            if self.report_delay > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.report_delay, self._owe, conn.system_id, owed)
            else:
                self._owe(conn.system_id, owed)

    def _receipt(self, record: Submitted, serial: int, stat: str, err: int) -> _Owed:
        now = dt.datetime.now(dt.UTC)
        text = format_receipt_text(
            self.ids.text(serial), stat, err, now, now, record.text, seconds=self.receipt_seconds
        )
        tlvs: list[smpp34.Tlv] = []
        if self.receipt_tlvs:
            tlvs = [
                smpp34.Tlv(wire.TLV_RECEIPTED_MESSAGE_ID, wire.cstring(self.ids.tlv(serial))),
                smpp34.Tlv(wire.TLV_MESSAGE_STATE, bytes((STAT_STATE[stat],))),
            ]
            if err:  # GSM network type (3), then the code (SMPP 3.4 §5.3.2.31)
                tlvs.append(smpp34.Tlv(wire.TLV_NETWORK_ERROR_CODE, b"\x03" + err.to_bytes(2)))
        body = text.encode("ascii", "replace")
        return _Owed(record.recipient, record.sender, 0x04, 0, body, tlvs)

    # --- deliver_sm ---------------------------------------------------------------------

    def _owe(self, system_id: str, owed: _Owed) -> None:
        if self._stopped:
            return
        box = self._outboxes[system_id]
        box.queue.append(owed)
        box.ready.set()
        self._changed.set()

    async def _deliver(self, conn: _Connection) -> None:
        """Send what is owed to this connection's system_id, `deliver_window` at a time."""
        box = self._outboxes[conn.system_id]
        while conn.open:
            if not box.queue or self._holding_receipts:
                box.ready.clear()
                await box.ready.wait()
                continue
            await conn.window.acquire()
            if not box.queue or not conn.open:
                conn.window.release()
                continue
            owed = box.queue.popleft()
            seq = conn.next_seq()
            conn.delivering[seq] = owed
            conn.writer.write(owed.encode(seq))
            self.counts["deliver_sent"] += 1

    def _on_response(self, conn: _Connection, frame: wire.Frame) -> None:
        """deliver_sm_resp (or a generic_nack for one): a refusal puts it back in line."""
        owed = conn.delivering.pop(frame.seq, None)
        if owed is None:
            return  # enquire_link_resp, unbind_resp: nothing waits on them here
        conn.window.release()
        if frame.status == wire.ESME_ROK:
            self.counts["deliver_acked"] += 1
            return
        self.counts["deliver_refused"] += 1
        owed.refusals += 1
        if owed.refusals >= MAX_REFUSALS:
            self.counts["deliver_dropped"] += 1
            log.warning("sim.smsc_deliver_dropped", system_id=conn.system_id, to=owed.dest)
            return
        # Redelivery backs off as an SMSC's retry schedule does, 10 ms doubling to 5 s.
        delay = min(5.0, max(self.report_delay, 0.01) * 2.0 ** (owed.refusals - 1))
        asyncio.get_running_loop().call_later(delay, self._owe, conn.system_id, owed)


def _udh(submit: smpp34.SubmitSm) -> tuple[Concat | None, bytes]:
    """A submit_sm's concatenation element (None without a readable one) and its text bytes."""
    if submit.esm_class & 0x40:
        with contextlib.suppress(ValueError):
            return split_udh(submit.short_message)
    return None, submit.short_message


def _part_of(submit: smpp34.SubmitSm) -> int | None:
    """The part number of a concatenated submit_sm; None if it is not one."""
    concat, _ = _udh(submit)
    return concat.seq if concat else None


def _read(
    system_id: str, submit: smpp34.SubmitSm, status: int, message_id: str | None
) -> Submitted:
    """What a submit_sm says, its UDH taken apart and its text decoded."""
    concat, data = _udh(submit)
    coding = CODINGS.get(submit.data_coding)
    try:
        text = decode_part(data, coding) if coding else data.decode("latin-1")
    except ValueError:
        text = data.decode("latin-1")  # not what the data_coding says: keep the bytes visible
    return Submitted(
        system_id=system_id,
        sender=submit.source_addr,
        source_ton=submit.source_addr_ton,
        source_npi=submit.source_addr_npi,
        recipient=submit.destination_addr,
        dest_ton=submit.dest_addr_ton,
        dest_npi=submit.dest_addr_npi,
        coding=coding or f"dc{submit.data_coding}",
        esm_class=submit.esm_class,
        registered_delivery=submit.registered_delivery,
        concat=concat,
        text=text,
        status=status,
        message_id=message_id,
    )
