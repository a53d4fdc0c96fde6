"""Why training stops: errors train.py reports as one line."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


class NonFiniteLoss(ArithmeticError):
    """The loss (averaged over processes) is NaN or infinite: no weight has been touched yet."""

    def __init__(self, iteration: int, value: float) -> None:
        super().__init__(f"loss is {value} at iteration {iteration}")
        self.iteration = iteration
        self.value = value
