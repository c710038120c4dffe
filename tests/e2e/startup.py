"""Running the real `mmsgate` command in a subprocess, and what a clean start-up error is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
