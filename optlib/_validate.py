"""One style of argument checking for the whole package: ``ValueError("lr must be >= 0, got -1")``."""
from __future__ import annotations

import math


def _number(name: str, value) -> float:
    if isinstance(value, (bool, str, bytes)):  # True would pass as 1.0, "0.1" as 0.1, and fail later
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not isinstance(value, (int, float)):
        try:
            value = float(value)  # accepts 0-d tensors and numpy scalars
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def at_least(name: str, value, low: float) -> float:
    value = _number(name, value)
    if not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def positive(name: str, value) -> float:
    value = _number(name, value)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def in_range(name: str, value, low: float, high: float, *, high_inclusive: bool = False) -> float:
    value = _number(name, value)
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not ok:
        bracket = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value}")
    return value


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def one_of(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value
