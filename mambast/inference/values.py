"""Numbers users give (API arguments, CLI flags, web-form fields), checked and normalised in one place.

A number is any real numeric type a user's code produces: Python int/float, numpy scalars (np.int64,
np.float32...), 0-d numpy arrays and torch tensors, anything registered as `numbers.Real`. Bools (Python,
numpy or torch) are not numbers. Sequences of numbers may be lists, tuples, 1-d numpy arrays or tensors.
Every check returns plain Python values (int or float) and raises a one-line FieldError naming the field
otherwise (the CLI spells it as its flag); the message shows what was given as the number it is (or its type
when it is no number), so it never contradicts itself.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np

from ..errors import FieldError

SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes


def _scalar(value: object) -> object:
    """A numpy scalar, 0-d numpy array or 0-d torch tensor as the Python value it holds; anything else as is."""
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def as_number(value: object) -> int | float | None:
    """`value` as a Python int (integral types) or float (other reals); None when it is no real number
    (bools, strings, complex, arrays of more than one value...)."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def as_whole(value: object) -> int | None:
    """`value` as a Python int when it is a whole real number (3, np.int64(3), 3.0, np.float32(3)); else None."""
    x = as_number(value)
    if isinstance(x, float):
        return int(x) if math.isfinite(x) and x.is_integer() else None
    return x


def shown(value: object) -> str:
    """How a message shows what the user gave: the number itself (0.5, not np.float32(0.5)), or the value
    and its type when it is no number ('128' (str), True (bool))."""
    x = as_number(value)
    if x is not None:
        return repr(x)
    value = _scalar(value)  # np.True_ -> True
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _range_text(low: float | None, high: float | None, unit: str) -> str:
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f" in [{low!r}, {high!r}]{unit}"
    if low is not None:
        return f"{unit} >= {low!r}"
    if high is not None:
        return f"{unit} <= {high!r}"
    return unit


def check_number(value: object, name: str, low: float | None = None, high: float | None = None, *,
                 whole: bool = False, unit: str = "") -> int | float:
    """`value` checked: a (whole, if asked) finite real number in [low, high] -> int (whole) or float.

    UserError "NAME must be a number in [0, 1], got 1.5" (or "a whole number of px >= 8") otherwise."""
    x = as_whole(value) if whole else as_number(value)
    if x is not None and not whole:
        x = float(x)
    ok = x is not None and math.isfinite(x) and (low is None or x >= low) and (high is None or x <= high)
    if not ok:
        kind = "a whole number" if whole else "a number"
        if whole and unit:
            kind, unit = f"{kind} of {unit}", ""
        raise FieldError(f"{name} must be {kind}{_range_text(low, high, unit)}, got {shown(value)}", name)
    return x


def check_optional(value: object, name: str, low: float | None = None, high: float | None = None, *,
                   whole: bool = False, unit: str = "") -> int | float | None:
    """`check_number`, with None passed through."""
    return None if value is None else check_number(value, name, low, high, whole=whole, unit=unit)


def check_numbers(values: object, name: str, low: float | None = None) -> tuple[float, ...]:
    """A non-empty sequence (list, tuple, 1-d array...) of finite real numbers >= low -> a tuple of floats."""
    if isinstance(values, np.ndarray) and values.ndim != 1 or isinstance(values, (str, bytes, dict)) \
            or not isinstance(values, (Iterable, np.ndarray)):
        raise FieldError(f"{name} must be a sequence of numbers, got {shown(values)}", name)
    items = list(values)
    converted = [as_number(v) for v in items]
    bad = [v for v, x in zip(items, converted, strict=True)
           if x is None or not math.isfinite(x) or (low is not None and x < low)]
    if not items or bad:
        what = "numbers" if low is None else f"numbers >= {low!r}"
        detail = f"got {shown(bad[0])}" if bad else "got none"
        raise FieldError(f"{name} must be a sequence of {what}, {detail}", name)
    return tuple(float(x) for x in converted)


def check_seed(value: object, name: str = "seed") -> int | None:
    """A shuffle seed: None (drawn), or a whole number in the range torch's generators take -> int."""
    return check_optional(value, name, *SEED_RANGE, whole=True)


def check_flag(value: object, name: str) -> bool:
    """A switch: True or False (numpy bools too) -> bool; UserError for anything else ("no", 0, None)."""
    if not isinstance(value, (bool, np.bool_)):
        raise FieldError(f"{name} must be True or False, got {shown(value)}", name)
    return bool(value)
