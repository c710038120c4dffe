"""A real Kannel for the tests: Debian's bearerbox and smsbox (package `kannel`, installed by
scripts/test), with one SMPP link (transceiver) to an SMSC on loopback.

`running(smsc_port, ...)` writes a kannel.conf into a temp dir, starts bearerbox then smsbox,
and yields once bearerbox's status page shows the SMPP link online and smsbox connected; it
stops both (SIGTERM, then SIGKILL) without blocking the event loop, which the SMSC may share.
Every port is a free 127.0.0.1 port picked at run time and every listener is bound to
127.0.0.1. Logs are at debug level (PDU dumps): on a failure the temp dir is kept and the
tails printed; `Kannel.logs()` gives them for an assertion message.

What Kannel 1.4.5 wants here: a blank line ends a config group; an SMPP password of more than
8 characters goes out as a malformed bind, and a refused bind makes bearerbox PANIC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from tests.ports import free_ports

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
HOST = "127.0.0.1"
SMSC_ID = "sim"
USERNAME = "mmsgate"
START_SECONDS = 20.0
STOP_SECONDS = 5.0
START_ATTEMPTS = 3

CONF = """\
group = core
admin-port = {admin_port}
admin-interface = 127.0.0.1
admin-password = {admin_password}
status-password = {admin_password}
admin-allow-ip = "127.0.0.1"
admin-deny-ip = "*.*.*.*"
smsbox-port = {smsbox_port}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
box-deny-ip = "*.*.*.*"
dlr-storage = internal
log-file = "{work}/bearerbox.log"
log-level = {log_level}

group = smsc
smsc = smpp
smsc-id = {smsc_id}
host = 127.0.0.1
port = {smsc_port}
transceiver-mode = true
smsc-username = "{system_id}"
smsc-password = "{smsc_password}"
system-type = ""
interface-version = 34
reconnect-delay = 1
enquire-link-interval = 30
max-pending-submits = 10
{msg_id_type}
log-file = "{work}/smsc.log"
log-level = {log_level}

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{work}/smsbox.log"
log-level = {log_level}

# mmsgate splits long texts itself and sends each part with its own UDH and dlr-url.
group = sendsms-user
username = {username}
password = {password}
max-messages = 1
user-allow-ip = "127.0.0.1"
user-deny-ip = "*.*.*.*"
"""


@dataclasses.dataclass(frozen=True)
class Kannel:
    """A running bearerbox + smsbox pair, and how to reach it."""

    workdir: Path
    sendsms_url: str  # http://127.0.0.1:PORT/cgi-bin/sendsms
    username: str
    password: str
    smsc_id: str
    status_url: str  # bearerbox's admin status.txt, with its password

    def logs(self) -> str:
        """The tail of every log, to explain a failure."""
        return _tails(self.workdir)


def available() -> bool:
    return BEARERBOX.exists() and SMSBOX.exists()


@contextlib.asynccontextmanager
async def running(
    smsc_port: int,
    *,
    system_id: str,
    smsc_password: str,
    msg_id_type: int | None = None,
    log_level: int = 0,
) -> AsyncIterator[Kannel]:
    """Kannel with its SMPP link (transceiver) to 127.0.0.1:`smsc_port`, ready to send.

    `msg_id_type` is Kannel's setting for how the SMSC writes message ids (bit 0: hex in
    submit_sm_resp, bit 1: hex in the receipt); None leaves it unset, and Kannel matches the
    receipt's id to the submit's as the same string.

    A port picked free can be taken by another process before bearerbox or smsbox binds it
    (they PANIC with "Address already in use"); the pair is then started again on new ports,
    up to START_ATTEMPTS times."""
    if not available():
        raise RuntimeError(
            "Kannel's bearerbox/smsbox not found in /usr/sbin: install Debian's kannel "
            "package (scripts/test does)"
        )
    kannel, procs = await _start_pair(
        smsc_port,
        system_id=system_id,
        smsc_password=smsc_password,
        msg_id_type=msg_id_type,
        log_level=log_level,
    )
    ok = False
    try:
        yield kannel
        ok = True
    finally:
        await _stop_all(procs)
        if ok:
            shutil.rmtree(kannel.workdir, ignore_errors=True)
        else:
            print(f"Kannel work dir kept: {kannel.workdir}\n{_tails(kannel.workdir)}")


async def _start_pair(
    smsc_port: int,
    *,
    system_id: str,
    smsc_password: str,
    msg_id_type: int | None,
    log_level: int,
) -> tuple[Kannel, dict[str, asyncio.subprocess.Process]]:
    for attempt in range(1, START_ATTEMPTS + 1):
        work = Path(tempfile.mkdtemp(prefix="mmsgate-kannel-"))
        kannel = _configure(
            work,
            smsc_port,
            system_id=system_id,
            smsc_password=smsc_password,
            msg_id_type=msg_id_type,
            log_level=log_level,
        )
        procs: dict[str, asyncio.subprocess.Process] = {}
        try:
            procs["bearerbox"] = await _start(BEARERBOX, work)
            await _wait(kannel, procs, "bearerbox's admin page", lambda s: "SMS: received" in s)
            procs["smsbox"] = await _start(SMSBOX, work)
            await _wait(kannel, procs, "the SMPP link and smsbox", _ready)
            await _wait_port(kannel, procs)
        except BaseException as exc:
            await _stop_all(procs)
            if isinstance(exc, RuntimeError) and attempt < START_ATTEMPTS and _port_taken(work):
                shutil.rmtree(work, ignore_errors=True)
                continue
            print(f"Kannel work dir kept: {work}\n{_tails(work)}")
            raise
        return kannel, procs
    raise AssertionError("unreachable: the last attempt returns or raises")


def _configure(
    work: Path,
    smsc_port: int,
    *,
    system_id: str,
    smsc_password: str,
    msg_id_type: int | None,
    log_level: int,
) -> Kannel:
    """Write `work`/kannel.conf with new free ports; the Kannel it describes."""
    admin_port, smsbox_port, sendsms_port = free_ports(3)
    admin_password = secrets.token_hex(8)
    kannel = Kannel(
        workdir=work,
        sendsms_url=f"http://{HOST}:{sendsms_port}/cgi-bin/sendsms",
        username=USERNAME,
        password=secrets.token_hex(8),
        smsc_id=SMSC_ID,
        status_url=f"http://{HOST}:{admin_port}/status.txt?password={admin_password}",
    )
    conf = CONF.format(
        work=work,
        admin_port=admin_port,
        admin_password=admin_password,
        smsbox_port=smsbox_port,
        sendsms_port=sendsms_port,
        smsc_id=SMSC_ID,
        smsc_port=smsc_port,
        system_id=system_id,
        smsc_password=smsc_password,
        # (a blank line would end the group: Kannel's groups are separated by them)
        msg_id_type=f"msg-id-type = {msg_id_type}"
        if msg_id_type is not None
        else "# msg-id-type unset: receipt ids are matched as given",
        username=kannel.username,
        password=kannel.password,
        log_level=log_level,
    )
    (work / "kannel.conf").write_text(conf)
    return kannel


def _port_taken(work: Path) -> bool:
    """A box of this start could not bind one of its ports."""
    return any(
        "Address already in use" in path.read_text(errors="replace")
        for path in [*work.glob("*.log"), *work.glob("*.stderr")]
    )


async def _stop_all(procs: dict[str, asyncio.subprocess.Process]) -> None:
    for proc in reversed(procs.values()):  # smsbox first, then bearerbox
        try:
            await _stop(proc)
        finally:  # even when the wait itself was cancelled
            if proc.returncode is None:
                proc.kill()


async def _start(binary: Path, work: Path) -> asyncio.subprocess.Process:
    # -v 4 keeps the console quiet (a PANIC still reaches the .stderr file); the log-file
    # lines of kannel.conf hold the rest.
    with (work / f"{binary.name}.stderr").open("wb") as err:
        return await asyncio.create_subprocess_exec(
            binary,
            "-v",
            "4",
            work / "kannel.conf",
            cwd=work,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )


async def wait_link(kannel: Kannel, *, online: bool) -> None:
    """Until bearerbox's status page shows the SMPP link online (or, `online=False`, not)."""
    what = "the SMPP link " + ("online" if online else "down")
    await _wait(kannel, {}, what, lambda status: _link_online(status) == online)


def _link_online(status: str) -> bool:
    lines = status.splitlines()
    return any(line.strip().startswith(f"{SMSC_ID}[") and "(online" in line for line in lines)


def _ready(status: str) -> bool:
    """status.txt shows the SMPP link online and an smsbox connected, e.g.
    `sim[sim]  SMPP:127.0.0.1:40001/40001:mmsgate:  (online 1s, ...)` and
    `smsbox:(none), IP 127.0.0.1 (on-line 0d 0h 0m 0s)`."""
    box = any("smsbox:" in line and "on-line" in line for line in status.splitlines())
    return _link_online(status) and box


async def _wait(
    kannel: Kannel,
    procs: dict[str, asyncio.subprocess.Process],
    what: str,
    done: Callable[[str], bool],
) -> None:
    deadline = time.monotonic() + START_SECONDS
    last = ""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            _check_alive(procs, what)
            try:
                last = (await client.get(kannel.status_url)).text
            except httpx.TransportError:
                last = ""
            if done(last):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kannel: timed out waiting for {what}; status:\n{last}")
            await asyncio.sleep(0.05)


async def _wait_port(kannel: Kannel, procs: dict[str, asyncio.subprocess.Process]) -> None:
    """smsbox's sendsms port answers (it opens it after connecting to bearerbox)."""
    deadline = time.monotonic() + START_SECONDS
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            _check_alive(procs, "smsbox's sendsms port")
            try:
                await client.get(kannel.sendsms_url)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Kannel: smsbox's sendsms port never opened") from None
            await asyncio.sleep(0.05)


def _check_alive(procs: dict[str, asyncio.subprocess.Process], what: str) -> None:
    for name, proc in procs.items():
        if proc.returncode is not None:
            raise RuntimeError(f"Kannel: {name} exited ({proc.returncode}) before {what}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_SECONDS. The wait must yield to the event loop: on
    SIGTERM bearerbox unbinds its SMPP link and waits for the answer, which an SMSC in this
    process's loop could not give while a blocking wait held it (bearerbox then hangs)."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _tails(work: Path, lines: int = 40) -> str:
    out = []
    for path in sorted(work.glob("*.log")) + sorted(work.glob("*.stderr")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {path.name} ---\n" + "\n".join(text))
    return "\n".join(out)
