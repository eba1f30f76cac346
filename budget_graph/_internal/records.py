"""How our frozen dataclass records go into LangGraph checkpoints (``_asdict``).

LangGraph's checkpoint serializer stores an object that has ``_asdict`` as
``cls(**obj._asdict())``, the same format it uses for a dataclass, but it tries
``_asdict`` before a runtime ``Protocol`` check that every dataclass otherwise goes
through (tens of microseconds per object on Python 3.11: most of its time on our
records, of which a search step writes dozens). Loading calls the constructor, so the
fields left out here take their defaults.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

__all__ = ["record_fields"]

_DEFAULTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def record_fields(record: Any) -> dict[str, Any]:
    """The init fields of a dataclass ``record`` that differ from their defaults."""
    defaults = _DEFAULTS.get(type(record))
    if defaults is None:
        defaults = tuple((f.name, f.default) for f in fields(record) if f.init)
        _DEFAULTS[type(record)] = defaults
    out = {}
    for name, default in defaults:
        value = getattr(record, name)
        if default is MISSING or value != default:
            out[name] = value
    return out
