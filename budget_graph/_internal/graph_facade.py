"""The wrapped graph's non-run API on ``BudgetedGraph`` (state, schemas, drawing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig

__all__ = ["GraphFacade"]


class GraphFacade:
    """Methods that are the wrapped graph's own: named one by one, runs excluded."""

    graph: Any

    @property
    def InputType(self) -> Any:  # noqa: N802 - Runnable's name
        """The wrapped graph's input type."""
        return self.graph.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - Runnable's name
        """The wrapped graph's output type."""
        return self.graph.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        """The wrapped graph's input schema."""
        return self.graph.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        """The wrapped graph's output schema."""
        return self.graph.get_output_schema(config)

    @property
    def config_specs(self) -> Any:
        """The wrapped graph's configurable fields."""
        return self.graph.config_specs

    @property
    def checkpointer(self) -> Any:
        """The wrapped graph's checkpointer."""
        return getattr(self.graph, "checkpointer", None)

    @property
    def channels(self) -> Any:
        """The wrapped graph's state channels."""
        return getattr(self.graph, "channels", {})

    def get_graph(self, config: RunnableConfig | None = None, *, xray: int | bool = False) -> Any:
        """The wrapped graph's drawable graph."""
        return self.graph.get_graph(config, xray=xray)

    async def aget_graph(
        self, config: RunnableConfig | None = None, *, xray: int | bool = False
    ) -> Any:
        """Async :meth:`get_graph`."""
        return await self.graph.aget_graph(config, xray=xray)

    def get_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> Any:
        """The thread's state (the wrapped graph's ``get_state``)."""
        return self.graph.get_state(config, subgraphs=subgraphs)

    async def aget_state(self, config: RunnableConfig, *, subgraphs: bool = False) -> Any:
        """Async :meth:`get_state`."""
        return await self.graph.aget_state(config, subgraphs=subgraphs)

    def get_state_history(self, config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        """The thread's checkpoints, newest first."""
        return self.graph.get_state_history(config, **kwargs)

    def aget_state_history(self, config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        """Async :meth:`get_state_history`."""
        return self.graph.aget_state_history(config, **kwargs)

    def update_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None, **kwargs: Any
    ) -> RunnableConfig:
        """Update the thread's state (the wrapped graph's ``update_state``)."""
        return self.graph.update_state(config, values, as_node, **kwargs)

    async def aupdate_state(
        self, config: RunnableConfig, values: Any, as_node: str | None = None, **kwargs: Any
    ) -> RunnableConfig:
        """Async :meth:`update_state`."""
        return await self.graph.aupdate_state(config, values, as_node, **kwargs)

    def bulk_update_state(self, config: RunnableConfig, supersteps: Any) -> Any:
        """The wrapped graph's ``bulk_update_state``."""
        return self.graph.bulk_update_state(config, supersteps)

    async def abulk_update_state(self, config: RunnableConfig, supersteps: Any) -> Any:
        """Async :meth:`bulk_update_state`."""
        return await self.graph.abulk_update_state(config, supersteps)

    def get_subgraphs(self, **kwargs: Any) -> Any:
        """The wrapped graph's subgraphs."""
        return self.graph.get_subgraphs(**kwargs)
