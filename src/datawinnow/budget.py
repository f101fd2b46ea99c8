"""Budgets: a fraction of the pool in (0, 1] or a count in [1, n] (used by selection, LESS's warm-up subset
and the experiment planner; errors are :class:`~datawinnow.errors.BudgetError`)."""

from __future__ import annotations

from .errors import BudgetError


def resolve_budget(budget: float | int | str, n: int) -> int:
    """The number of records a budget stands for in a pool of ``n``.

    Strings with a '.' or '%' and floats are fractions (``0.1``, ``10%``, ``1.0`` = the whole pool);
    integers are counts. A fraction rounds to the nearest count, at least 1.
    """
    if n <= 0:
        raise BudgetError("the pool is empty: nothing to select from")
    value: float | int
    if isinstance(budget, str):
        text = budget.strip()
        try:
            if text.endswith("%"):
                value = float(text[:-1]) / 100.0
            elif "." in text or "e" in text.lower():
                value = float(text)
            else:
                value = int(text)
        except ValueError:
            raise BudgetError(f"budget '{budget}' is neither a fraction in (0, 1] nor a count") from None
    else:
        value = budget
    if isinstance(value, bool):
        raise BudgetError(f"budget must be a number, got {budget!r}")
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise BudgetError(f"budget fraction {value} is outside (0, 1]")
        return max(1, int(value * n + 0.5))
    if not 1 <= value <= n:
        raise BudgetError(f"budget {value} is outside (0, {n}] for a pool of {n} records")
    return int(value)
