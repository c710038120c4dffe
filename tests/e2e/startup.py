"""Running the real `mmsgate` command in a subprocess, and what a clean start-up error is.
Only the standard library and httpx: scripts/schemathesis starts its server with these too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BOUND = 15  # seconds a mistaken start may take to say so and exit


def env(**more: str) -> dict[str, str]:
    """The environment of a user who set nothing of mmsgate's but `more`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MMSGATE_")}
    return {**clean, **more}


def mmsgate(
    *args: str, cwd: Path, environment: dict[str, str], timeout: float = BOUND
) -> subprocess.CompletedProcess[str]:
    """Run `mmsgate ARGS`; a run that outlives `timeout` fails the test (TimeoutExpired)."""
    return subprocess.run(
        [sys.executable, "-m", "mmsgate", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Non-zero exit, at most three lines on stderr naming the problem (all of `words`),
    no traceback, and nothing claiming to listen."""
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stderr + result.stdout
    for word in words:
        assert word.lower() in result.stderr.lower(), (word, result.stderr)


def healthy(base: str, proc: subprocess.Popen[Any], within: float = 60.0) -> bool:
    """Whether the server `proc` runs answers 200 on `base`/healthz within `within` seconds;
    False as soon as the process has exited."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def stopped_after(proc: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """`proc` until the block ends, then stopped: SIGTERM, which lets `mmsgate run` finish
    what it is doing, and SIGKILL if it has not exited 30 seconds later."""
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
