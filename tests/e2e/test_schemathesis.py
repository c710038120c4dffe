"""schemathesis against a real `mmsgate run`, as scripts/schemathesis runs it, on each
database: the seeded budget over every operation of /openapi.json ends with no failure."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg
from tests.conftest import BACKENDS

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[2] / "scripts" / "schemathesis.py"
_names = itertools.count()


@pytest.mark.parametrize("backend", BACKENDS)
def test_schemathesis_finds_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """2,000 seeded cases checked for server errors and for status codes, content types,
    headers and bodies that the document does not give: none fails."""
    database = []
    if backend == "postgresql":
        admin = request.getfixturevalue("pg_admin_url")
        name = f"fuzz{os.getpid()}_{next(_names)}"
        database = ["--database-url", pg.create_database(admin, name)]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--keep", str(tmp_path), *database],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated is not None, output
    assert int(generated.group(1)) >= 2000, output
    assert generated.group(1) == generated.group(2), output
    assert "Traceback" not in (tmp_path / "server.log").read_text()
