"""`python -m mmsgate` runs the command line."""

from __future__ import annotations

from mmsgate.cli import main

main()
