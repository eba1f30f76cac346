"""How ``with_budget`` reads a LangGraph stream: chunk shapes, and ``invoke`` as a fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Fold", "Shape"]

_INTERRUPT = "__interrupt__"


class Shape:
    """How a stream's chunks look for the given ``stream_mode``/``subgraphs`` arguments."""

    __slots__ = ("modes", "multi", "subgraphs")

    def __init__(self, graph: Any, kwargs: dict[str, Any]) -> None:
        mode: Any = kwargs.get("stream_mode") or getattr(graph, "stream_mode", "values")
        self.multi = not isinstance(mode, str)
        self.modes: Sequence[str] = list(mode) if self.multi else [str(mode)]
        self.subgraphs = bool(kwargs.get("subgraphs"))

    def values_of(self, chunk: Any) -> Any:
        """The full state in ``chunk`` when it is a root ``values`` chunk, else ``None``."""
        ns: tuple = ()
        if self.subgraphs:
            if not isinstance(chunk, tuple) or len(chunk) < 2:
                return None
            ns, chunk = chunk[0], chunk[1:] if self.multi else chunk[1]
            if self.multi:
                chunk = tuple(chunk)
        if ns:
            return None
        if self.multi:
            if isinstance(chunk, tuple) and len(chunk) == 2 and chunk[0] == "values":
                return chunk[1]
            return None
        return chunk if self.modes == ["values"] else None

    def chunks(self, values: Any, update: dict[str, Any], node: str) -> list[Any]:
        """Chunks announcing the budget's final update (for ``values``/``updates`` modes)."""
        out: list[Any] = []
        for mode in self.modes:
            payload = values if mode == "values" else {node: update} if mode == "updates" else None
            if payload is None:
                continue
            chunk: Any = (mode, payload) if self.multi else payload
            if self.subgraphs:
                chunk = ((), *chunk) if self.multi else ((), chunk)
            out.append(chunk)
        return out


class Fold:
    """``Pregel.invoke``'s fold of a stream into one result (``values`` mode, v1)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.mode = kwargs.get("stream_mode", "values")
        self.values_mode = self.mode == "values" and kwargs.get("version", "v1") == "v1"
        self.kwargs = (
            {**kwargs, "stream_mode": ["updates", "values"]} if self.values_mode else kwargs
        )
        self.subgraphs = bool(kwargs.get("subgraphs"))
        self.latest: Any = None
        self.interrupts: list[Any] = []
        self.chunks: list[Any] = []

    def add(self, chunk: Any) -> None:
        if not self.values_mode:
            self.chunks.append(chunk)
            return
        if self.subgraphs:
            ns, mode, payload = chunk
            if ns:
                return
        else:
            mode, payload = chunk
        if mode == "updates" and isinstance(payload, dict) and _INTERRUPT in payload:
            self.interrupts.extend(payload[_INTERRUPT])
        elif mode == "values":
            self.latest = payload

    def result(self, finish: Callable[[Any], Any]) -> Any:
        if not self.values_mode:
            return self.chunks
        latest = finish(self.latest)
        if self.interrupts:
            if isinstance(latest, dict):
                return {**latest, _INTERRUPT: self.interrupts}
            return {_INTERRUPT: self.interrupts}
        return latest
