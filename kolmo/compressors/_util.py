"""Small helpers shared by the codec modules."""

from __future__ import annotations


def ceil_log2(n: int) -> int:
    """Smallest k with 2**k >= n (0 for n <= 1)."""
    return max(0, (int(n) - 1).bit_length())
