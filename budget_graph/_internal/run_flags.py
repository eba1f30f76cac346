"""Run-scoped notes ``budget_edge`` leaves for ``guard`` and ``with_budget`` (in the run config)."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables.config import var_child_runnable_config

__all__ = ["RUN_KEY", "RunFlags", "current_flags"]

RUN_KEY = "budget_graph_run"
"""``config["configurable"]`` key holding the run's :class:`RunFlags`."""


class RunFlags:
    """What parts of a run noticed about its budget."""

    __slots__ = ("low_node",)

    def __init__(self) -> None:
        self.low_node: str | None = None
        """The node a budget edge sent the run to because the budget ran low."""


def current_flags(config: Any = None) -> RunFlags | None:
    """The current run's flags, if a ``with_budget`` run is current."""
    cfg = config if config is not None else var_child_runnable_config.get()
    flags = ((cfg or {}).get("configurable") or {}).get(RUN_KEY)
    return flags if isinstance(flags, RunFlags) else None
