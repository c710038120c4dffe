"""The error tree: every exception class mmsgate defines descends from one root, and the
root module's docstring draws each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mmsgate
from mmsgate import errors


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(mmsgate.__path__, "mmsgate."):
        if info.name.endswith(("__main__", "migrations.env")):
            continue  # the command line entry runs on import; alembic's env needs a context
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{value.__qualname__}"] = value
    return found


def test_every_exception_descends_from_the_root() -> None:
    """Each exception class in src/ is an MmsgateError (some also keep a stdlib base)."""
    classes = exception_classes()
    assert len(classes) >= 25
    outside = sorted(
        name for name, cls in classes.items() if not issubclass(cls, errors.MmsgateError)
    )
    assert outside == []


def test_the_root_docstring_draws_every_exception() -> None:
    """errors.py's docstring names every exception class mmsgate defines."""
    tree = errors.__doc__ or ""
    missing = sorted(name for name, cls in exception_classes().items() if cls.__name__ not in tree)
    assert missing == []


def test_stdlib_bases_are_kept() -> None:
    """Classes that callers catch as ValueError or LookupError still are those."""
    from mmsgate import mm7_codec, xmlsafe
    from mmsgate.store import fallbacks

    assert issubclass(xmlsafe.Refused, ValueError)
    assert issubclass(xmlsafe.Unreadable, ValueError)
    assert issubclass(mm7_codec.Mm7FormatError, ValueError)
    assert issubclass(fallbacks.UnknownPart, LookupError)
