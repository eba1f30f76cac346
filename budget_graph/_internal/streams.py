"""How ``with_budget`` reads a LangGraph stream: chunk shapes, and ``invoke`` as a fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Fold", "Shape"]

_INTERRUPT = "__interrupt__"


class Shape:
    """The caller's ``stream_mode``/``subgraphs`` chunk format, over a stream with values.

    ``with_budget`` streams the graph with ``"values"`` added to the caller's modes, so
    it always knows the run's latest state, and hands the caller only the chunks (and
    the chunk shape) it asked for.
    """

    __slots__ = ("inner", "modes", "multi", "subgraphs")

    def __init__(self, graph: Any, kwargs: dict[str, Any]) -> None:
        mode: Any = kwargs.get("stream_mode") or getattr(graph, "stream_mode", "values")
        self.multi = not isinstance(mode, str)
        self.modes: Sequence[str] = list(mode) if self.multi else [str(mode)]
        self.subgraphs = bool(kwargs.get("subgraphs"))
        self.inner = kwargs.get("version", "v1") == "v1"
        """Whether the graph is streamed in our own shape (v1 chunks; v2 passes through)."""

    def inner_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The graph's stream arguments: the caller's modes plus ``"values"``, as a list."""
        if not self.inner:
            return kwargs
        modes = [*self.modes, *(() if "values" in self.modes else ("values",))]
        return {**kwargs, "stream_mode": modes}

    def split(self, chunk: Any) -> tuple[Any, Any]:
        """``(root state or None, the chunk as the caller wants it or None)``."""
        if not self.inner:
            return None, chunk
        ns: tuple = ()
        if self.subgraphs:
            ns, mode, payload = chunk
        else:
            mode, payload = chunk
        values = payload if mode == "values" and not ns else None
        if mode not in self.modes:
            return values, None
        return values, self._shaped(ns, mode, payload)

    def _shaped(self, ns: tuple, mode: str, payload: Any) -> Any:
        if self.multi:
            return (ns, mode, payload) if self.subgraphs else (mode, payload)
        return (ns, payload) if self.subgraphs else payload

    def chunks(self, values: Any, update: dict[str, Any], node: str) -> list[Any]:
        """Chunks announcing the budget's final update (for ``values``/``updates`` modes)."""
        if not self.inner:
            return []
        out: list[Any] = []
        for mode in self.modes:
            payload = values if mode == "values" else {node: update} if mode == "updates" else None
            if payload is not None:
                out.append(self._shaped((), mode, payload))
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
