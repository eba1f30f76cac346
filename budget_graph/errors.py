"""Errors raised by budget_graph. Every error keeps its numbers as attributes and in its text."""

from __future__ import annotations

__all__ = [
    "BudgetError",
    "BudgetExceededError",
    "NoMeterError",
    "UsageOverrunWarning",
]


class BudgetError(Exception):
    """Root of every error budget_graph raises on purpose."""


class BudgetExceededError(BudgetError):
    """A call (or the run) would exceed, or has exceeded, its token budget.

    Attributes:
        limit: The budget limit in budget units (tokens, or micro-USD in cost mode).
        spent: Units already committed when the check ran.
        requested: Units the refused reservation asked for (0 for a post-hoc check).
        scope: What the limit applies to: ``"run"``, ``"thread"``, ``"call"``, a node name...
        reserved: Units held by other in-flight reservations when the check ran.

    """

    def __init__(
        self,
        *,
        limit: int,
        spent: int,
        requested: int,
        scope: str = "run",
        reserved: int = 0,
        unit: str = "tokens",
        message: str | None = None,
    ) -> None:
        self.limit = limit
        self.spent = spent
        self.requested = requested
        self.scope = scope
        self.reserved = reserved
        self.unit = unit
        if message is None:
            message = (
                f"The next call would exceed the {scope} budget of {limit} {unit} "
                f"(spent={spent}, reserved={reserved}, requested={requested}, "
                f"remaining={max(limit - spent - reserved, 0)})"
            )
        super().__init__(message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keyword-only init: make the error picklable (LangGraph may serialise task errors).
        return (
            _rebuild_exceeded,
            (
                self.limit,
                self.spent,
                self.requested,
                self.scope,
                self.reserved,
                self.unit,
                str(self),
            ),
        )


def _rebuild_exceeded(
    limit: int, spent: int, requested: int, scope: str, reserved: int, unit: str, message: str
) -> BudgetExceededError:
    return BudgetExceededError(
        limit=limit,
        spent=spent,
        requested=requested,
        scope=scope,
        reserved=reserved,
        unit=unit,
        message=message,
    )


class NoMeterError(BudgetError):
    """A budgeted model was called where no meter is current, so nothing would cap it.

    Raised before anything is sent. Typical causes: a call outside ``with_budget`` /
    ``use_meter``, or from a thread or executor started inside a node without
    :func:`~budget_graph.carry_context`. ``budgeted(model, require_meter=False)``
    allows unbudgeted calls explicitly.
    """


class UsageOverrunWarning(UserWarning):
    """A provider reported more usage than was reserved (it ignored ``max_tokens``)."""
