"""Re-export of the shipped fakes for the core tests."""

from budget_graph.testing import BillingFakeChat, ExplodingChat

__all__ = ["BillingFakeChat", "ExplodingChat"]
