"""Option values: whole numbers and numbers of seconds, 0 or more, bounded. Plain Python, no pytest import.

Shared by the plugin's options and ini values, the ``# batch:`` settings, the
Python API and the ``batchrunner`` command, so all say the same thing about a
bad value, and nothing that cannot be waited for reaches ``time.sleep``,
``poll`` or pytest-rerunfailures.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_SECONDS",
    "byte_count",
    "cli_bytes",
    "cli_float",
    "cli_int",
    "cli_share",
    "cli_timeout",
    "non_negative_float",
    "non_negative_int",
    "share",
    "timeout_seconds",
]

MAX_SECONDS = 2_147_483
"""The longest wait in seconds: 2**31 - 1 milliseconds (about 24.8 days), what one ``poll(2)`` can wait.
Delays and grace periods above it are refused; a longer timeout means "no timeout" in practice."""

MAX_COUNT = 1_000_000
"""The largest count (jobs, workers, retries) accepted: far above any machine's processes."""


def non_negative_int(value: str | int, maximum: int | None = MAX_COUNT) -> int:
    """*value* as a whole number, 0 to *maximum*; :class:`ValueError` saying what is wrong otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not a whole number") from None
    if isinstance(value, float) and number != value:
        raise ValueError(f"'{value}' is not a whole number")
    if number < 0:
        raise ValueError(f"'{value}' must be 0 or more")
    if maximum is not None and number > maximum:
        raise ValueError(f"'{value}' is too large (at most {maximum})")
    return number


MAX_BYTES = 1 << 40
"""The largest byte count accepted (1 TiB)."""


def byte_count(value: str | int) -> int:
    """A number of bytes, 0 to :data:`MAX_BYTES`."""
    return non_negative_int(value, MAX_BYTES)


def non_negative_float(value: str | float, maximum: float | None = MAX_SECONDS) -> float:
    """*value* as a finite number of seconds, 0 to *maximum* (default :data:`MAX_SECONDS`, about 24.8 days).

    :class:`ValueError` saying what is wrong otherwise (not a number, NaN, infinite, negative, too large).
    """
    if isinstance(value, bool):
        raise ValueError(f"'{value}' is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"'{value}' is not a number") from None
    if math.isnan(number):
        raise ValueError(f"'{value}' is not a number")
    if number < 0:
        raise ValueError(f"'{value}' must be 0 or more")
    if math.isinf(number):
        raise ValueError(f"'{value}' must be a finite number of seconds")
    if maximum is not None and number > maximum:
        raise ValueError(f"'{value}' is too large (at most {maximum:.0f} seconds, about {maximum / 86400:.1f} days)")
    return number


def timeout_seconds(value: str | float) -> float:
    """A timeout: a finite number of seconds, 0 or more; no upper bound (a long one is waited for in steps)."""
    return non_negative_float(value, maximum=None)


def _cli(convert):  # type: ignore[no-untyped-def]
    def parse(value: str):  # type: ignore[no-untyped-def]
        try:
            return convert(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__  # argparse names the type in its messages
    parse.__doc__ = f":func:`{convert.__name__}` as an argparse ``type``."
    return parse


cli_int = _cli(non_negative_int)
cli_bytes = _cli(byte_count)
cli_float = _cli(non_negative_float)
cli_timeout = _cli(timeout_seconds)


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


cli_share = _cli(share)
