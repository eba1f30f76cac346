"""Tasks: prompts, answer extraction and verifiers (Game of 24, date understanding)."""

from budget_graph.tasks.base import Item, SampledTask, SearchTask

__all__ = ["Item", "SampledTask", "SearchTask"]
