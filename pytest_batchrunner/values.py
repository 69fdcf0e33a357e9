"""Option values: whole numbers and numbers of seconds, 0 or more. Plain Python, no pytest import.

Shared by the plugin's options and ini values and by the ``batchrunner`` command,
so both say the same thing about a bad value.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["cli_float", "cli_int", "cli_share", "non_negative_float", "non_negative_int", "share"]


def non_negative_int(value: str) -> int:
    """*value* as a whole number, 0 or more; :class:`ValueError` saying what is wrong otherwise."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a whole number") from None
    if number < 0:
        raise ValueError(f"'{value}' must be 0 or more")
    return number


def non_negative_float(value: str) -> float:
    """*value* as a number, 0 or more (not NaN); :class:`ValueError` saying what is wrong otherwise."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a number") from None
    if not number >= 0:
        raise ValueError(f"'{value}' must be 0 or more")
    return number


def cli_int(value: str) -> int:
    """:func:`non_negative_int` as an argparse ``type``."""
    try:
        return non_negative_int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cli_float(value: str) -> float:
    """:func:`non_negative_float` as an argparse ``type``."""
    try:
        return non_negative_float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def share(value: str) -> float:
    """*value*, a percentage such as ``"300%"``, as a fraction (3.0); :class:`ValueError` saying what is wrong otherwise."""
    text = value.strip()
    try:
        percent = float(text[:-1]) if text.endswith("%") and len(text) > 1 else math.nan
    except ValueError:
        percent = math.nan
    if not math.isfinite(percent) or percent <= 0:
        raise ValueError(f"'{value}' is not a percentage above 0 (e.g. 300%)")
    return percent / 100


def cli_share(value: str) -> float:
    """:func:`share` as an argparse ``type``."""
    try:
        return share(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
