"""Benchmark runners on the shipped replay data (``budget-graph bench``)."""

__all__: list[str] = []
