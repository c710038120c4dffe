"""Run the accept benchmark against a throwaway PostgreSQL server (fsync on, durable).

    .venv/bin/python bench/accept/with_postgres.py [DURATION_S] [CONNECTIONS] [THREADS]

Starts Debian's PostgreSQL on a free loopback port in a temp dir (as the postgres user
when run as root), runs bench/accept/run.sh with MMSGATE_DATABASE_URL pointing at it,
then stops and removes the server. SERVE_WORKERS and SKIP_KANNEL pass through.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import pg  # noqa: E402 - the repository root must be on the path first


def main() -> int:
    with pg.server(durable=True) as admin_url:
        url = pg.create_database(admin_url, "bench")
        env = {**os.environ, "MMSGATE_DATABASE_URL": url}
        script = ROOT / "bench" / "accept" / "run.sh"
        return subprocess.run([str(script), *sys.argv[1:]], env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
