"""Small helpers shared by the codec modules."""

from __future__ import annotations


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Return ``value`` if it is an int in [lo, hi], else raise a TypeError/ValueError that says so."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int between {lo} and {hi}, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def ceil_log2(n: int) -> int:
    """Smallest k with 2**k >= n (0 for n <= 1)."""
    return max(0, (int(n) - 1).bit_length())
