"""A real `mmsgate run` to push against, and raw-socket clients that behave badly: uploads
without end, requests that never finish, connections that never speak."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.startup import env, healthy, stopped_after
from tests.ports import free_port

SIM_PAIR = ("sim-mmsc", "sim-secret")  # the Basic pair /mm7 takes (simulator_inbound_*)


@dataclasses.dataclass(frozen=True)
class Server:
    """A running `mmsgate run`: its port, process, demo key, data dir and log."""

    port: int
    proc: subprocess.Popen[str]
    key: str
    data_dir: Path
    log: Path

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None, status
        return int(found.group(1))

    def connect(self, source: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock


@contextlib.contextmanager
def running(tmp_path: Path, config: str = "") -> Iterator[Server]:
    """`mmsgate run` on a free port with `config` added to the config file, until the block
    ends; the simulator's MMSC presents SIM_PAIR on /mm7."""
    port = free_port()
    path = tmp_path / "mmsgate.toml"
    path.write_text(
        f'simulator_inbound_username = "{SIM_PAIR[0]}"\n'
        f'simulator_inbound_password = "{SIM_PAIR[1]}"\n' + config
    )
    out, log = tmp_path / "stdout.txt", tmp_path / "server.log"
    with out.open("w") as stdout, log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmsgate", "run", "--port", str(port), "--config", str(path)],
            cwd=tmp_path,
            env=env(MMSGATE_ALLOW_PRIVATE_NETWORKS="1"),
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    with stopped_after(proc):
        key = _demo_key(out, proc)
        if not healthy(f"http://127.0.0.1:{port}", proc):
            raise AssertionError("mmsgate run did not come up")
        yield Server(port, proc, key, tmp_path / "mmsgate-data", log)


def _demo_key(out: Path, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if found := re.search(r"api-key (\S+)", out.read_text()):
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError("mmsgate run printed no demo api-key")


@dataclasses.dataclass
class Upload:
    """What a client managed to send before the server stopped it, and what it heard."""

    sent: int
    answer: bytes
    closed: bool  # the server ended the connection (EOF or reset)


def upload(sock: socket.socket, head: bytes, total: int, *, chunked: bool) -> Upload:
    """Send `head`, then a body of `total` bytes as fast as the server takes it, reading
    whatever the server answers meanwhile; stop when the server closes or all is sent and
    answered."""
    piece = b"x" * 65536
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece
    sock.sendall(head)
    sock.setblocking(False)
    sent, pending, answer = 0, b"", b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not pending and sent < total:
            pending, sent = frame, sent + len(piece)
            if sent >= total and chunked:
                pending += b"0\r\n\r\n"
        readable, writable, _ = select.select([sock], [sock] if pending else [], [], 1.0)
        try:
            if readable:
                data = sock.recv(65536)
                if not data:
                    return Upload(sent, answer, closed=True)
                answer += data
            if writable and pending:
                pending = pending[sock.send(pending) :]
        except (ConnectionResetError, BrokenPipeError):
            return Upload(sent, answer, closed=True)
        if not pending and sent >= total and b"\r\n\r\n" in answer:
            return Upload(sent, answer, closed=False)
    raise AssertionError(f"upload neither finished nor was stopped ({sent} bytes sent)")


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took;
    AssertionError if it is still open after `within` seconds."""
    started = time.monotonic()
    sock.settimeout(within)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {within} s, having sent {received!r}") from None
    return received, time.monotonic() - started
