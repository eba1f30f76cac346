"""Swap one chat model for another inside a composed runnable (kept transparent wrappers).

A provider's ``with_structured_output(schema, method=..., strict=...)`` returns a chain
built around the provider's own model (``model.bind(response_format=...) | parser``,
or a ``RunnableParallel`` with ``include_raw``). To budget that chain without losing
the provider's arguments, the chain is built by the provider and its model is then
swapped for the budgeted wrapper, wherever it occurs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import Runnable

__all__ = ["swap_model"]


def _swap(value: Any, old: Any, new: Any, found: list[bool]) -> Any:
    if value is old:
        found.append(True)
        return new
    if isinstance(value, Runnable):
        return swap_model(value, old, new, found)
    if isinstance(value, list | tuple):
        items = [_swap(v, old, new, found) for v in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if isinstance(value, Mapping):
        swapped = {k: _swap(v, old, new, found) for k, v in value.items()}
        changed = any(swapped[k] is not v for k, v in value.items())
        return swapped if changed else value
    return value


def swap_model(runnable: Any, old: Any, new: Any, found: list[bool] | None = None) -> Any:
    """``runnable`` with every occurrence of the chat model ``old`` replaced by ``new``.

    Walks the pydantic fields of composed runnables (sequences, parallels, bindings,
    assigns, fallbacks); other runnables are kept as they are. ``found`` collects one
    entry per replacement.
    """
    found = found if found is not None else []
    if runnable is old:
        found.append(True)
        return new
    fields = getattr(type(runnable), "model_fields", None)
    if not fields:
        return runnable
    update = {}
    for name in fields:
        value = getattr(runnable, name, None)
        swapped = _swap(value, old, new, found)
        if swapped is not value:
            update[name] = swapped
    return runnable.model_copy(update=update) if update else runnable
