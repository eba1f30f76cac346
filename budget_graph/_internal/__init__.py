"""Private helpers of budget_graph: no public API, imported only by budget_graph's own modules."""
