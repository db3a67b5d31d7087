"""The checks every option record shares: an integer or a number in a range (never a bool), one
of a few choices. Each raises OptionsError naming the parameter as the Python API spells it
(`notes must be an integer 1..10,000,000, got 0`); the CLI names it as its flag."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import OptionsError


def flag(field: str) -> str:
    """The command-line flag of a parameter: num_outputs -> --num-outputs."""
    return "--" + field.replace("_", "-")


def show(value: float) -> str:
    """A bound as messages write it: 10,000,000 and 1e-05, but 1024 (no separator under 10,000)."""
    if isinstance(value, (int, np.integer)) or float(value).is_integer():
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:g}"


def is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float (numpy's included), not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def integer(field: str, value: object, low: int, high: int | None = None, allowed: str = "") -> int:
    """`value` as an int when it is an integer low..high (high None: no upper bound)."""
    if not is_integer(value) or value < low or (high is not None and value > high):  # type: ignore[operator]
        span = allowed or (f"{show(low)}..{show(high)}" if high is not None else f">= {show(low)}")
        raise OptionsError(f"{field} must be an integer {span}, got {value!r}", field)
    return int(value)  # type: ignore[arg-type]


def number(field: str, value: object, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, unit: str = "", hint: str = "") -> float:
    """`value` as a float when it is a finite number in the interval (None: unbounded that side);
    `unit` follows the interval in the message, `hint` (what a value means) in parentheses."""
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low  # type: ignore[operator]
    if ok and high is not None:
        ok = value < high if high_open else value <= high  # type: ignore[operator]
    if not ok:
        raise OptionsError(f"{field} must be a number {interval(low, high, low_open, high_open)}"
                           f"{' ' + unit if unit else ''}{f' ({hint})' if hint else ''}, got {value!r}", field)
    return float(value)  # type: ignore[arg-type]


def interval(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {show(low)}" if low is not None else ""
    if low is None:
        return f"{'<' if high_open else '<='} {show(high)}"
    return f"in {'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"


def choice(field: str, value: object, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise OptionsError(f"{field} must be one of {', '.join(options)}, got {value!r}", field)
    return value
