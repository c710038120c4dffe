"""The store's seams: only the Database knows which backend runs, and no module of mmsgate
touches another library's private attributes."""

from __future__ import annotations

import pathlib
import re

import mmsgate

SRC = pathlib.Path(mmsgate.__file__).parent
# Asking which backend runs: the old flag, or a branch on the dialect's name.
BACKEND_QUESTION = re.compile(r"\bis_sqlite\b|dialect\.name\s*([!=]=|\])")
# An attribute with a leading underscore read off anything but the object's own class.
PRIVATE = re.compile(r"(?<![\w.])(?!self\.|cls\.)([A-Za-z_]\w*(?:\(\))?)\._[a-z]\w*")
# Underscored names their libraries document as public: SQLAlchemy's `Row._mapping` (named
# so to stay clear of column names) and the `_value_` an Enum's `__new__` sets.
DOCUMENTED = ("._mapping", "._value_")


def _lines(pattern: re.Pattern[str], *, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if not str(path.relative_to(SRC)).startswith(skip)
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]


def test_only_the_database_asks_which_backend_runs() -> None:
    """No module but store/db.py branches on the backend (a column type, given the dialect
    to adapt to, and Alembic's migration set-up excepted)."""
    skip = ("store/db.py", "store/schema.py", "store/migrations/")
    assert _lines(BACKEND_QUESTION, skip=skip) == []


def test_no_private_attribute_of_another_library_is_touched() -> None:
    """No `x._name` on anything but `self`/`cls`, beyond the documented names."""
    found = [line for line in _lines(PRIVATE) if not any(d in line for d in DOCUMENTED)]
    assert found == []
