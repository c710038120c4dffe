"""The SMPP 3.4 connector: one bind_transceiver to the route's SMSC for the fallback SMS.

Why a thin session of our own over smpp34's codec:

- smpp34 1.5.0 (MIT, Rust core, typed) encodes and decodes submit_sm/deliver_sm with their
  TLVs at millions of PDUs a second; we use exactly that. Its asyncio *session* does not fit
  the fallback leg: it acknowledges every deliver_sm itself before Python sees it ("the
  SMPP-level ACK is sent automatically by the core", `DeliverSmEvent`), so a receipt could be
  acknowledged and then lost to a crash, and a failing store cannot make the SMSC redeliver;
  its Python `Client` exposes no enquire_link interval and does not reconnect. Measured in
  bench/fallback/smpp_bench.py: it fails requests beyond its window with ESME_RSYSERR
  instead of waiting, and made ~1,400 SMS/s on one bind (window 32) where this module made
  ~8,000-13,000 against the same simulator. Its `Server` reports no bound port (no port 0
  for tests), checks no password and hides enquire_link, so the simulator is ours too.
- aiosmpplib 0.7.4 is a full session, but built around a queue and hooks rather than an
  awaitable submit, and what we would use of it we found broken when we tried it:
  `parse_receipt()` raises on 12-digit dates and `err:0x0B`, segmentation decides by
  characters not septets, addresses go out as TON/NPI 0/0 with the '+'.
- The session itself is small: frame by command_length, match answers by sequence_number,
  answer enquire_link/unbind, and the rules below. Here it is, in this module.

Behaviour:

- `start()` begins binding in the background and returns; `submit()` starts it on first use,
  so a worker that never sends SMS never connects. Call `start()` at worker start to receive
  receipts the SMSC holds from before a restart. `close()` unbinds cleanly.
- bind_transceiver with system_id/password/system_type, interface_version 0x34; enquire_link
  every `route.enquire_link_seconds`, the connection given up when one goes unanswered.
- After a dropped connection or a refused bind: reconnect with exponential backoff and jitter
  (0.5 s doubling to 30 s by default).
- At most `route.window` submit_sm unanswered at once, at most `route.max_sps` a second.
  ESME_RTHROTTLED/ESME_RMSGQFUL also hold new submits back for `throttle_pause`.
- A submit waits up to `bind_wait` for a bind. A part written but unanswered when the
  connection drops (or within `response_timeout`) is a transient failure: the SMSC may or may
  not have it, and the worker decides whether to retry. Nothing is resent here, so one
  submit() is never counted twice.
- Each part's receipt is awaited into the sink *before* its deliver_sm_resp; a sink that
  raises is answered ESME_RX_T_APPN so the SMSC redelivers (SMPP 3.4 §5.1.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import smpp34
import structlog

from mmsgate import errors
from mmsgate.carriers import smpp_pdu as wire
from mmsgate.carriers.base import ReceiptSink, SmsReceipt, SmsResult, SmsSubmit
from mmsgate.carriers.smpp_receipt import is_receipt, read_receipt, submit_id
from mmsgate.settings import SmsRoute
from mmsgate.sms_text import DATA_CODING, Coding, encode_part, udh

log = structlog.get_logger(__name__)

UDHI = 0x40  # esm_class: short_message starts with a UDH (SMPP 3.4 §5.2.12)
RECEIPT_ON_FINAL = 0x01  # registered_delivery: a receipt on final success or failure
RECEIPTS_AT_ONCE = 64  # receipts handed to the sink concurrently before reading pauses


class _NotSent(errors.MmsgateError):
    """The session ended before the PDU was written: it may go out on the next bind."""


class _Unanswered(errors.MmsgateError):
    """The PDU was written but no answer came (connection lost, or timeout)."""


class _NotBound(errors.MmsgateError):
    """No bind within the submit's wait, or the connector is closing."""


class _Session:
    """One TCP connection: sequence numbers, requests awaiting their answer, the writer."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response_timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response_timeout = response_timeout
        self.open = True
        self._seq = 0
        self._pending: dict[int, asyncio.Future[wire.Frame]] = {}

    def next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1  # §3.2: 0x00000001 to 0x7FFFFFFF, then wraps
        return self._seq

    async def request(self, encoded: bytes) -> wire.Frame:
        """Send one request PDU (its sequence number filled in) and await its answer."""
        timeout = self.response_timeout
        if not self.open:
            raise _NotSent
        seq = self.next_seq()
        answer: asyncio.Future[wire.Frame] = asyncio.get_running_loop().create_future()
        self._pending[seq] = answer
        try:
            self.writer.write(wire.with_seq(encoded, seq))
            async with asyncio.timeout(timeout):
                await self.writer.drain()
                return await answer
        except TimeoutError:
            raise _Unanswered(f"no answer within {timeout:g} s") from None
        except ConnectionError as exc:
            raise _Unanswered(f"connection lost ({type(exc).__name__})") from None
        finally:
            self._pending.pop(seq, None)

    def send(self, command_id: int, status: int, seq: int, body: bytes = b"") -> None:
        if self.open:
            self.writer.write(wire.pdu(command_id, status, seq, body))

    def answer(self, frame: wire.Frame) -> None:
        waiter = self._pending.pop(frame.seq, None)
        if waiter is None:
            log.info("smpp.late_answer", seq=frame.seq, command_id=hex(frame.command_id))
        elif not waiter.done():
            waiter.set_result(frame)

    def lose(self, reason: str) -> None:
        """The connection is gone: every request awaiting an answer fails as unanswered."""
        self.open = False
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(_Unanswered(reason))
        self._pending.clear()
        self.writer.close()


class _Pace:
    """Submits per second on the bind, and a pause after the SMSC says it is throttling."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._paused_until = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        at = max(now, self._next, self._paused_until)
        self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)  # a rate limit: the wait is the point

    def pause(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self._paused_until = max(self._paused_until, now + seconds)


class SmppConnector:
    """Sends fallback SMS over one SMPP bind and hands their receipts to `sink`."""

    def __init__(
        self,
        route: SmsRoute,
        sink: ReceiptSink,
        *,
        response_timeout: float = 10.0,
        bind_wait: float = 10.0,
        connect_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        throttle_pause: float = 0.5,
    ) -> None:
        if not (route.host and route.port and route.system_id):
            raise ValueError(f"sms route {route.name}: smpp needs host, port and system_id")
        self.route = route
        self._sink = sink
        self._response_timeout = response_timeout
        self._bind_wait = bind_wait
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._throttle_pause = throttle_pause
        self._window = asyncio.Semaphore(route.window)
        self._pace = _Pace(route.max_sps)
        self._bound = asyncio.Event()
        self._session: _Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._receipt_slots = asyncio.Semaphore(RECEIPTS_AT_ONCE)
        self._receipt_tasks: set[asyncio.Task[None]] = set()
        self.binds = 0  # successful binds so far
        self.last_error: str | None = None  # why the last connection or bind ended

    # --- the public face ----------------------------------------------------------------

    async def start(self) -> None:
        """Begin binding (and rebinding) in the background; returns at once."""
        if (self._runner is None or self._runner.done()) and not self._closing:
            self._runner = asyncio.get_running_loop().create_task(self._run())
            self._runner.add_done_callback(self._runner_ended)

    def _runner_ended(self, runner: asyncio.Task[None]) -> None:
        """A bug must not silently end reconnecting: log it; the next submit() restarts."""
        if not runner.cancelled() and runner.exception() is not None:
            error = runner.exception()
            log.error("smpp.runner_failed", route=self.route.name, exc_info=error)

    @property
    def bound(self) -> bool:
        return self._session is not None and self._session.open

    async def wait_bound(self) -> None:
        """Return once bound (wrap it in `asyncio.timeout`); RuntimeError once closed."""
        await self.start()
        while not self.bound:
            if self._closing:
                raise RuntimeError("the connector is closed")
            await self._bound.wait()

    def known_ids(self, sms: SmsSubmit) -> tuple[str, ...] | None:
        """None: the SMSC names each part in its submit_sm_resp."""
        return None

    async def submit(self, sms: SmsSubmit) -> SmsResult:
        """Submit the parts in order from `sms.first`; the first refusal or failure ends the
        submit (the result then names the parts taken before it)."""
        await self.start()
        dest = dest_address(sms.recipient, self.route)
        if dest is None:
            return SmsResult(
                False, (), wire.ESME_RINVDSTADR, f"refused before sending: {sms.recipient!r}"
            )
        encoded = self._encode(sms, dest)
        deadline = asyncio.get_running_loop().time() + self._bind_wait
        ids: list[str] = []
        for n, pdu in enumerate(encoded[sms.first - 1 :], sms.first):
            try:
                frame = await self._send(pdu, deadline)
            except (_NotBound, _Unanswered) as exc:
                return _failed(sms, ids, n, 0, str(exc), transient=True)
            if frame.status != wire.ESME_ROK:
                transient = frame.status in wire.TRANSIENT_STATUSES
                if transient:
                    self._pace.pause(self._throttle_pause)
                text = wire.status_name(frame.status)
                return _failed(sms, ids, n, frame.status, text, transient=transient)
            ids.append(submit_id(wire.message_id_of(frame.body), self.route.msg_id_type))
        return SmsResult(True, tuple(ids), wire.ESME_ROK, "accepted")

    async def close(self) -> None:
        """Unbind, stop reconnecting, and let receipts in the sink finish (5 s at most)."""
        self._closing = True
        self._bound.set()  # wakes submits waiting for a bind: they see the connector closing
        session = self._session
        if session is not None and session.open:
            with contextlib.suppress(_NotSent, _Unanswered):
                await session.request(wire.pdu(wire.UNBIND, 0, 0))
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._receipt_tasks:
            await asyncio.wait(self._receipt_tasks, timeout=5.0)
            for task in self._receipt_tasks:
                task.cancel()

    # --- submitting ---------------------------------------------------------------------

    def _encode(self, sms: SmsSubmit, dest: tuple[str, int, int]) -> list[bytes]:
        """Each part's submit_sm, numbered later; UDH and UDHI when there are several."""
        if sms.coding not in DATA_CODING:
            raise ValueError(f"unknown coding {sms.coding!r}")
        coding: Coding = "gsm7" if sms.coding == "gsm7" else "ucs2"
        source, source_ton, source_npi = source_address(sms.sender, self.route)
        total = len(sms.parts)
        encoded: list[bytes] = []
        for n, text in enumerate(sms.parts, 1):
            body = encode_part(text, coding)
            if total > 1:
                body = udh(sms.concat_ref, total, n) + body
            encoded.append(
                smpp34.SubmitSm(
                    source,
                    dest[0],
                    body,
                    service_type=self.route.system_type or "",
                    source_addr_ton=source_ton,
                    source_addr_npi=source_npi,
                    dest_addr_ton=dest[1],
                    dest_addr_npi=dest[2],
                    esm_class=UDHI if total > 1 else 0,
                    registered_delivery=RECEIPT_ON_FINAL,
                    data_coding=DATA_CODING[coding],
                    sequence_number=1,
                ).encode()
            )
        return encoded

    async def _send(self, encoded: bytes, deadline: float) -> wire.Frame:
        """One request on the current bind, within the window and the rate; a PDU that no
        session could write waits for the next bind until `deadline`."""
        while True:
            await self._pace.wait()
            async with self._window:
                session = await self._session_before(deadline)
                try:
                    return await session.request(encoded)
                except _NotSent:
                    continue

    async def _session_before(self, deadline: float) -> _Session:
        while True:
            if self._closing:
                raise _NotBound("the connector is closing")
            session = self._session
            if session is not None and session.open:
                return session
            try:
                async with asyncio.timeout_at(deadline):
                    await self._bound.wait()
            except TimeoutError:
                reason = f": {self.last_error}" if self.last_error else ""
                raise _NotBound(f"not bound to the SMSC{reason}") from None

    # --- the connection -----------------------------------------------------------------

    async def _run(self) -> None:
        """Bind, read until the connection ends, back off, bind again; until close()."""
        failures = 0
        while not self._closing:
            if failures:
                await asyncio.sleep(self._delay(failures))  # backoff: the wait is the point
            failures += 1
            try:
                session = await self._bind()
            except (OSError, TimeoutError, EOFError, wire.PduError, _Refused) as exc:
                # EOFError includes IncompleteReadError: the SMSC hung up at the bind.
                self.last_error = str(exc) or type(exc).__name__
                log.warning("smpp.bind_failed", route=self.route.name, error=self.last_error)
                continue
            failures = 1  # a drop after a good bind waits the shortest backoff
            self._session = session
            self.binds += 1
            self._bound.set()
            log.info("smpp.bound", route=self.route.name, binds=self.binds)
            keeper = asyncio.get_running_loop().create_task(self._keep_alive(session))
            try:
                reason = await self._read(session)
            finally:
                keeper.cancel()
                self._bound.clear()
                self._session = None
                session.lose("connection closed")
            self.last_error = reason
            if not self._closing:
                log.warning("smpp.connection_lost", route=self.route.name, reason=reason)

    def _delay(self, failures: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random."""
        first, cap = self._backoff
        step = min(cap, first * 2.0 ** (failures - 1))
        return step / 2 + random.uniform(0, step / 2)

    async def _bind(self) -> _Session:
        """Connect and bind_transceiver (SMPP 3.4 §4.1.5), both within connect_timeout."""
        route = self.route
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(route.host, route.port)
        session = _Session(reader, writer, self._response_timeout)
        bind = wire.Bind(route.system_id or "", route.password or "", route.system_type or "")
        try:
            async with asyncio.timeout(self._connect_timeout):
                writer.write(
                    wire.pdu(wire.BIND_TRANSCEIVER, 0, session.next_seq(), wire.encode_bind(bind))
                )
                frame = await wire.read_frame(reader)
        except BaseException:
            writer.close()
            raise
        if frame.command_id != wire.BIND_TRANSCEIVER | wire.RESPONSE or frame.status:
            writer.close()
            raise _Refused(f"bind refused: {wire.status_name(frame.status)}")
        return session

    async def _read(self, session: _Session) -> str:
        """Dispatch PDUs until the connection ends; returns why it ended."""
        while True:
            try:
                frame = await wire.read_frame(session.reader)
            except (asyncio.IncompleteReadError, OSError):
                return "the SMSC closed the connection"
            except wire.PduError as exc:
                return f"unreadable PDU: {exc}"
            command = frame.command_id
            if command & wire.RESPONSE:
                session.answer(frame)  # generic_nack included: it answers by sequence too
            elif command == wire.DELIVER_SM:
                await self._deliver(session, frame)
            elif command == wire.ENQUIRE_LINK:
                session.send(wire.ENQUIRE_LINK | wire.RESPONSE, 0, frame.seq)
            elif command == wire.UNBIND:
                session.send(wire.UNBIND | wire.RESPONSE, 0, frame.seq)
                return "the SMSC unbound"
            else:
                session.send(wire.GENERIC_NACK, wire.ESME_RINVCMDID, frame.seq)

    async def _keep_alive(self, session: _Session) -> None:
        while session.open:
            await asyncio.sleep(self.route.enquire_link_seconds)  # the keep-alive period
            try:
                await session.request(wire.pdu(wire.ENQUIRE_LINK, 0, 0))
            except (_NotSent, _Unanswered):
                log.warning("smpp.enquire_link_unanswered", route=self.route.name)
                session.writer.transport.abort()  # ends _read, which rebinds
                return

    # --- receipts -----------------------------------------------------------------------

    async def _deliver(self, session: _Session, frame: wire.Frame) -> None:
        """A deliver_sm: a receipt goes to the sink before its answer; MO is only logged."""
        resp = wire.DELIVER_SM | wire.RESPONSE
        try:
            deliver = smpp34.decode(frame.raw)
        except (smpp34.SmppError, ValueError) as exc:
            log.warning("smpp.deliver_unreadable", route=self.route.name, error=str(exc))
            session.send(resp, wire.ESME_RINVMSGLEN, frame.seq, b"\x00")
            return
        if not isinstance(deliver, smpp34.DeliverSm) or not is_receipt(deliver.esm_class):
            # Mobile-originated text: mmsgate takes MO over MM7 only, so it is noted and let go.
            sender = deliver.source_addr if isinstance(deliver, smpp34.DeliverSm) else None
            log.info("smpp.mo_received", route=self.route.name, sender=sender)
            session.send(resp, 0, frame.seq, b"\x00")
            return
        receipt = read_receipt(deliver, self.route.name, self.route.msg_id_type)
        if receipt is None:
            # No id: nothing could ever match it, and a redelivery would not name one either.
            log.warning("smpp.receipt_without_id", route=self.route.name)
            session.send(resp, 0, frame.seq, b"\x00")
            return
        await self._receipt_slots.acquire()  # a slow sink slows reading: backpressure
        task = asyncio.get_running_loop().create_task(self._hand_over(session, frame.seq, receipt))
        self._receipt_tasks.add(task)
        task.add_done_callback(self._receipt_tasks.discard)

    async def _hand_over(self, session: _Session, seq: int, receipt: SmsReceipt) -> None:
        status = wire.ESME_ROK
        try:
            await self._sink(receipt)
        except Exception as exc:  # noqa: BLE001 - any sink failure must make the SMSC redeliver
            # A warning, not a traceback: the pipeline's sink refuses a receipt that beats
            # the commit of its own submit, on purpose, to have it delivered again.
            log.warning(
                "smpp.receipt_refused",
                route=self.route.name,
                id=receipt.message_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            status = wire.ESME_RX_T_APPN
        finally:
            self._receipt_slots.release()
        session.send(wire.DELIVER_SM | wire.RESPONSE, status, seq, b"\x00")


class _Refused(errors.MmsgateError):
    """The SMSC answered the bind with an error status."""


def _failed(
    sms: SmsSubmit, ids: list[str], n: int, status: int, text: str, *, transient: bool
) -> SmsResult:
    """A failed submit; says when earlier parts were accepted (their ids stay in the result)."""
    if len(sms.parts) > 1:
        text = f"part {n} of {len(sms.parts)}: {text}"
        if ids:
            last = sms.first + len(ids) - 1
            text += f" (parts {sms.first}-{last} were accepted: {', '.join(ids)})"
    return SmsResult(False, tuple(ids), status, text, transient)


# --- addresses ------------------------------------------------------------------------------


def source_address(sender: str, route: SmsRoute) -> tuple[str, int, int]:
    """(address, TON, NPI) of the sender: the route's override, else alphanumeric 5/0, a short
    code of up to 8 digits 3/0, any other number international 1/1 (reference §5.1)."""
    digits = sender[1:] if sender.startswith("+") else sender
    if not digits.isdecimal():
        ton, npi, address = 5, 0, sender
    elif len(digits) <= 8:
        ton, npi, address = 3, 0, digits
    else:
        ton, npi, address = 1, 1, digits
    if route.source_ton is not None:
        ton = route.source_ton
    if route.source_npi is not None:
        npi = route.source_npi
    return address, ton, npi


def dest_address(recipient: str, route: SmsRoute) -> tuple[str, int, int] | None:
    """(digits, TON, NPI) of the recipient, without '+'; None if it is not a number."""
    digits = recipient.strip().removeprefix("+")
    if not digits.isdecimal() or not digits.isascii():
        return None
    return digits, route.dest_ton, route.dest_npi
